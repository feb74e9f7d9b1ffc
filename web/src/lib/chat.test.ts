import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/client";
import { sendChat } from "./chat";

afterEach(() => vi.unstubAllGlobals());

function sse(parts: string[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(encoder.encode(part));
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", "x-request-id": "req-1", "x-aigw-upstream": "mock" } });
}

describe("sendChat", () => {
  it("streams through the gateway proxy with the key, never with cookies", async () => {
    const fetchMock = vi.fn().mockResolvedValue(
      sse([
        'data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"Hel"}}]}\n\n',
        'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
      ]),
    );
    vi.stubGlobal("fetch", fetchMock);
    const seen: string[] = [];
    const result = await sendChat({ key: "sk-aigw-x", model: "demo-chat", messages: [{ role: "user", content: "hi" }], stream: true, maxTokens: 16 }, (t) => seen.push(t));
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("/gateway/v1/chat/completions");
    expect(init.credentials).toBe("omit");
    expect(init.headers.Authorization).toBe("Bearer sk-aigw-x");
    expect(JSON.parse(init.body)).toEqual({ model: "demo-chat", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true }, max_tokens: 16 });
    expect(seen).toEqual(["Hel", "Hello"]);
    expect(result).toMatchObject({ text: "Hello", requestId: "req-1", upstream: "mock", model: "gpt-4o-mini", finishReason: "stop", usage: { prompt_tokens: 4, completion_tokens: 2 } });
  });

  it("throws the gateway's OpenAI-format error", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response(JSON.stringify({ error: { message: "model 'x' is not allowed for this key", type: "permission_error", code: "model_not_allowed" } }), { status: 403 })));
    const error = await sendChat({ key: "k", model: "x", messages: [], stream: true }, () => {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 403, message: "model 'x' is not allowed for this key" });
  });

  it("reads a non-streamed answer", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response(JSON.stringify({ model: "m", choices: [{ message: { content: "Hi!" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1 } }), { status: 200, headers: { "Content-Type": "application/json" } })));
    const result = await sendChat({ key: "k", model: "m", messages: [], stream: false }, () => {});
    expect(result.text).toBe("Hi!");
  });
});
