// The one place the dashboard talks HTTP. Every failure becomes an ApiError with the status and
// the config center's error body ({"error": {"type", "message", "details"}}) when there is one,
// so pages show one kind of message and the session can react to 401 in one place.

export interface FieldProblem {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly details: FieldProblem[];

  constructor(status: number, type: string, message: string, details: FieldProblem[] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.details = details;
  }

  /** 0: the request never got an answer (network down, server stopped). */
  get isNetwork(): boolean {
    return this.status === 0;
  }
}

type Listener = (error: ApiError) => void;
const unauthorizedListeners = new Set<Listener>();

/** Called on every 401 answer (an expired or revoked session); returns an unsubscribe. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

let bearerToken: string | null = null;

/** A bearer token to send (the bootstrap admin token flow); null: rely on the session cookie. */
export function setBearerToken(token: string | null): void {
  bearerToken = token;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.append(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

function asDetails(value: unknown): FieldProblem[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((item): item is Record<string, unknown> => typeof item === "object" && item !== null)
    .map((item) => ({
      field: String(item.field ?? (Array.isArray(item.loc) ? item.loc.join(".") : "")),
      message: String(item.message ?? item.msg ?? ""),
    }));
}

/** An ApiError from an answer that is not 2xx, whatever its body is. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // the body could not be read: keep the status line
  }
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && typeof body === "object") {
    const error = (body as { error?: unknown }).error;
    if (error && typeof error === "object") {
      const e = error as { type?: unknown; message?: unknown; details?: unknown; code?: unknown };
      return new ApiError(
        response.status,
        String(e.type ?? e.code ?? "error"),
        String(e.message ?? response.statusText),
        asDetails(e.details),
      );
    }
    const detail = (body as { detail?: unknown }).detail;
    if (typeof detail === "string") return new ApiError(response.status, "error", detail);
    if (Array.isArray(detail)) {
      const details = asDetails(detail);
      return new ApiError(
        response.status,
        "invalid_request",
        details.map((d) => `${d.field}: ${d.message}`).join("; "),
        details,
      );
    }
  }
  const fallback = text && text.length < 300 && !text.trimStart().startsWith("<") ? text.trim() : "";
  return new ApiError(
    response.status,
    "http_error",
    fallback || `${response.status} ${response.statusText || "error"}`.trim(),
  );
}

export interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** A JSON request to the config center (same origin, /api/...); null for 204. */
export async function request<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (bearerToken) headers.Authorization = `Bearer ${bearerToken}`;
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "same-origin",
      signal: options.signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
    throw new ApiError(0, "network", cause instanceof Error ? cause.message : String(cause));
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (error.status === 401) unauthorizedListeners.forEach((listener) => listener(error));
    throw error;
  }
  if (response.status === 204) return null as T;
  const text = await response.text();
  if (!text) return null as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(response.status, "invalid_response", "the server's answer is not JSON");
  }
}
