import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, errorFrom, onUnauthorized, request, setBearerToken, withQuery } from "./client";

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

afterEach(() => {
  vi.unstubAllGlobals();
  setBearerToken(null);
});

describe("errorFrom", () => {
  it("reads the config center's error body with its field details", async () => {
    const error = await errorFrom(
      json(422, { error: { type: "invalid_request", message: "models[1].targets[0].provider: unknown provider 'nope'", details: [{ field: "models[1].targets[0].provider", message: "unknown provider 'nope'" }] } }),
    );
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(422);
    expect(error.type).toBe("invalid_request");
    expect(error.message).toContain("unknown provider");
    expect(error.details).toEqual([{ field: "models[1].targets[0].provider", message: "unknown provider 'nope'" }]);
  });

  it("reads OpenAI-format errors from the gateway (code instead of details)", async () => {
    const error = await errorFrom(json(401, { error: { message: "invalid API key", type: "invalid_request_error", code: "invalid_api_key", param: null } }));
    expect(error.status).toBe(401);
    expect(error.type).toBe("invalid_request_error");
    expect(error.message).toBe("invalid API key");
  });

  it("reads FastAPI's default validation errors", async () => {
    const error = await errorFrom(json(422, { detail: [{ loc: ["query", "limit"], msg: "too big", type: "less_than_equal" }] }));
    expect(error.details).toEqual([{ field: "query.limit", message: "too big" }]);
    expect(error.message).toBe("query.limit: too big");
  });

  it("keeps a short plain-text body and hides an HTML page", async () => {
    expect((await errorFrom(new Response("upstream down", { status: 502, statusText: "Bad Gateway" }))).message).toBe("upstream down");
    const html = await errorFrom(new Response("<html><body>nginx</body></html>", { status: 504, statusText: "Gateway Timeout" }));
    expect(html.message).toBe("504 Gateway Timeout");
    expect(html.type).toBe("http_error");
  });
});

describe("request", () => {
  it("sends JSON, the bearer token when set, and parses the answer", async () => {
    const fetchMock = vi.fn().mockResolvedValue(json(200, { name: "team-a" }));
    vi.stubGlobal("fetch", fetchMock);
    setBearerToken("tok");
    const result = await request<{ name: string }>("/api/v1/namespaces", { method: "POST", body: { name: "team-a" }, query: { dry_run: true, q: "", x: undefined } });
    expect(result).toEqual({ name: "team-a" });
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("/api/v1/namespaces?dry_run=true");
    expect(init.headers.Authorization).toBe("Bearer tok");
    expect(init.headers["Content-Type"]).toBe("application/json");
    expect(init.body).toBe('{"name":"team-a"}');
    expect(init.credentials).toBe("same-origin");
  });

  it("answers null for 204", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response(null, { status: 204 })));
    expect(await request("/api/v1/namespaces/x", { method: "DELETE" })).toBeNull();
  });

  it("turns a failed connection into ApiError status 0", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new TypeError("Failed to fetch")));
    const error = await request("/api/v1/auth/me").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).isNetwork).toBe(true);
    expect((error as ApiError).message).toBe("Failed to fetch");
  });

  it("tells the session about a 401, and only about a 401", async () => {
    const listener = vi.fn();
    const unsubscribe = onUnauthorized(listener);
    vi.stubGlobal("fetch", vi.fn().mockResolvedValueOnce(json(403, { error: { type: "forbidden", message: "viewers cannot change anything" } })).mockResolvedValueOnce(json(401, { error: { type: "unauthenticated", message: "invalid or expired token" } })));
    await expect(request("/api/v1/namespaces", { method: "POST", body: {} })).rejects.toMatchObject({ status: 403, message: "viewers cannot change anything" });
    expect(listener).not.toHaveBeenCalled();
    await expect(request("/api/v1/namespaces")).rejects.toMatchObject({ status: 401 });
    expect(listener).toHaveBeenCalledTimes(1);
    unsubscribe();
  });

  it("refuses an answer that is not JSON", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response("<html>", { status: 200 })));
    await expect(request("/api/v1/config")).rejects.toMatchObject({ type: "invalid_response" });
  });
});

describe("withQuery", () => {
  it("appends to a path that has a query already and encodes values", () => {
    expect(withQuery("/a?x=1", { q: "a b", n: 0 })).toBe("/a?x=1&q=a+b&n=0");
    expect(withQuery("/a", {})).toBe("/a");
  });
});
