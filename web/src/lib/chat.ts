// The playground's call to the gateway (through `aigw web`'s /gateway proxy): an OpenAI chat
// completion with the caller's key, streamed or not. No cookie goes along (credentials: omit):
// the gateway knows callers by their key only.
import { errorFrom } from "../api/client";
import { readChatStream, type ChatDelta, type ChatUsage } from "./sse";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  key: string;
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  maxTokens?: number | null;
  temperature?: number | null;
  signal?: AbortSignal;
}

export interface ChatResult {
  text: string;
  requestId: string | null;
  upstream: string | null;
  model: string | null;
  usage: ChatUsage | null;
  firstTokenMs: number | null;
  totalMs: number;
  finishReason: string | null;
}

export const GATEWAY = "/gateway";

export async function listModels(key: string, signal?: AbortSignal): Promise<string[]> {
  const response = await fetch(`${GATEWAY}/v1/models`, { headers: { Authorization: `Bearer ${key}` }, credentials: "omit", signal });
  if (!response.ok) throw await errorFrom(response);
  const body = (await response.json()) as { data?: { id: string }[] };
  return (body.data ?? []).map((m) => m.id);
}

export async function sendChat(request: ChatRequest, onText: (textSoFar: string) => void): Promise<ChatResult> {
  const started = performance.now();
  const body: Record<string, unknown> = { model: request.model, messages: request.messages, stream: request.stream };
  if (request.stream) body.stream_options = { include_usage: true };
  if (request.maxTokens) body.max_tokens = request.maxTokens;
  if (request.temperature !== null && request.temperature !== undefined) body.temperature = request.temperature;
  const response = await fetch(`${GATEWAY}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${request.key}`, "Content-Type": "application/json", Accept: request.stream ? "text/event-stream" : "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    signal: request.signal,
  });
  const result: ChatResult = {
    text: "",
    requestId: response.headers.get("x-request-id"),
    upstream: response.headers.get("x-aigw-upstream"),
    model: null,
    usage: null,
    firstTokenMs: null,
    totalMs: 0,
    finishReason: null,
  };
  if (!response.ok) throw await errorFrom(response);
  const type = response.headers.get("content-type") ?? "";
  if (request.stream && type.includes("text/event-stream") && response.body) {
    result.text = await readChatStream(response.body, (delta: ChatDelta) => {
      if (delta.content) {
        if (result.firstTokenMs === null) result.firstTokenMs = performance.now() - started;
        result.text += delta.content;
        onText(result.text);
      }
      if (delta.model) result.model = delta.model;
      if (delta.usage) result.usage = delta.usage;
      if (delta.finishReason) result.finishReason = delta.finishReason;
    });
  } else {
    const answer = (await response.json()) as { model?: string; usage?: ChatUsage; choices?: { message?: { content?: string }; finish_reason?: string }[] };
    result.text = answer.choices?.[0]?.message?.content ?? "";
    result.model = answer.model ?? null;
    result.usage = answer.usage ?? null;
    result.finishReason = answer.choices?.[0]?.finish_reason ?? null;
    result.firstTokenMs = performance.now() - started;
    onText(result.text);
  }
  result.totalMs = performance.now() - started;
  return result;
}
