import { describe, expect, it } from "vitest";
import { SseParser, chatDelta, readChatStream } from "./sse";

const chunk = (content: string, extra: Record<string, unknown> = {}) =>
  `data: ${JSON.stringify({ model: "gpt-4o-mini", choices: [{ index: 0, delta: { content }, finish_reason: null }], ...extra })}\n\n`;

function streamOf(parts: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(typeof part === "string" ? encoder.encode(part) : part);
      controller.close();
    },
  });
}

describe("SseParser", () => {
  it("dispatches events split anywhere across chunks", () => {
    const parser = new SseParser();
    const text = 'data: {"a":1}\n\nevent: ping\ndata: x\n\n';
    const events = [];
    for (const ch of text) events.push(...parser.feed(ch));
    expect(events).toEqual([
      { event: "message", data: '{"a":1}' },
      { event: "ping", data: "x" },
    ]);
  });

  it("handles CRLF (also split between chunks), CR, comments and multi-line data", () => {
    const parser = new SseParser();
    const events = [...parser.feed(": keep-alive\r\ndata: one\r"), ...parser.feed("\ndata: two\r\n\r"), ...parser.feed("\ndata:three\r\r")];
    expect(events).toEqual([
      { event: "message", data: "one\ntwo" },
      { event: "message", data: "three" },
    ]);
  });

  it("ignores blank lines with no data and dispatches a last event without a blank line at the end", () => {
    const parser = new SseParser();
    expect(parser.feed("\n\n\nretry: 10\n\n")).toEqual([]);
    expect(parser.feed("data: [DONE]")).toEqual([]);
    expect(parser.end()).toEqual([{ event: "message", data: "[DONE]" }]);
  });
});

describe("chatDelta", () => {
  it("reads content, finish reason, usage, [DONE] and errors", () => {
    expect(chatDelta({ event: "message", data: chunk("Hi").slice(6).trim() }).content).toBe("Hi");
    const last = chatDelta({ event: "message", data: JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 5 } }) });
    expect(last.content).toBe("");
    expect(last.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5 });
    expect(chatDelta({ event: "message", data: "[DONE]" }).done).toBe(true);
    expect(chatDelta({ event: "message", data: '{"error": {"message": "upstream cut the stream"}}' }).error).toBe("upstream cut the stream");
    expect(chatDelta({ event: "message", data: "not json" }).error).toMatch(/unreadable/);
  });
});

describe("readChatStream", () => {
  it("shows text as it arrives, even when a chunk splits a UTF-8 character", async () => {
    const bytes = new TextEncoder().encode(chunk("你好"));
    const cut = bytes.indexOf(0xe4) + 1; // inside the first character
    const seen: string[] = [];
    let text = "";
    const result = await readChatStream(
      streamOf([chunk("Hello"), bytes.slice(0, cut), bytes.slice(cut), chunk(" world", { usage: null }), "data: [DONE]\n\n", chunk("ignored")]),
      (delta) => {
        text += delta.content;
        if (delta.content) seen.push(text);
      },
    );
    expect(result).toBe("Hello你好 world");
    expect(seen).toEqual(["Hello", "Hello你好", "Hello你好 world"]);
  });

  it("rejects on an error event in the stream", async () => {
    await expect(readChatStream(streamOf([chunk("partial"), 'data: {"error": {"message": "boom"}}\n\n']), () => {})).rejects.toThrow("boom");
  });

  it("ends at the end of the body without [DONE]", async () => {
    expect(await readChatStream(streamOf([chunk("a"), chunk("b").trimEnd()]), () => {})).toBe("ab");
  });
});
