// Server-sent events, parsed incrementally as bytes arrive (the playground shows a streamed chat
// reply live). Follows the WHATWG event-stream rules the dashboard meets: LF, CRLF or CR line
// ends, "data:" lines joined with "\n", "event:" names, ":" comments, a blank line dispatches;
// chunk boundaries may fall anywhere, inside a line or inside a UTF-8 character.

export interface SseEvent {
  event: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private pendingCR = false;

  /** Feed decoded text; returns the events completed by it. */
  feed(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let chunk = text;
    if (this.pendingCR && chunk.startsWith("\n")) chunk = chunk.slice(1); // CRLF split across chunks
    this.pendingCR = false;
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      if (match[0] === "\r" && match.index === this.buffer.length - 1) {
        this.pendingCR = true; // maybe the first half of a CRLF
      }
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const dispatched = this.line(line);
      if (dispatched) events.push(dispatched);
    }
    return events;
  }

  /** The end of the stream: an event not followed by a blank line is dispatched too. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.buffer) {
      const dispatched = this.line(this.buffer);
      this.buffer = "";
      if (dispatched) events.push(dispatched);
    }
    const last = this.line("");
    if (last) events.push(last);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    return null;
  }
}

export interface ChatUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

/** What one chunk of an OpenAI chat stream adds. */
export interface ChatDelta {
  content: string;
  model?: string;
  finishReason?: string | null;
  usage?: ChatUsage | null;
  error?: string;
  done?: boolean;
}

/** Read one event of an OpenAI-format chat completion stream. */
export function chatDelta(event: SseEvent): ChatDelta {
  if (event.data.trim() === "[DONE]") return { content: "", done: true };
  let chunk: unknown;
  try {
    chunk = JSON.parse(event.data);
  } catch {
    return { content: "", error: `unreadable stream event: ${event.data.slice(0, 200)}` };
  }
  if (typeof chunk !== "object" || chunk === null) return { content: "" };
  const body = chunk as {
    error?: { message?: string };
    model?: string;
    usage?: ChatUsage | null;
    choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  };
  if (body.error) return { content: "", error: body.error.message ?? "the stream ended with an error" };
  const choice = body.choices?.[0];
  return {
    content: choice?.delta?.content ?? "",
    model: body.model,
    finishReason: choice?.finish_reason ?? null,
    usage: body.usage ?? null,
  };
}

/**
 * Read a streamed chat answer to its end, calling onDelta for each piece (the text so far is the
 * caller's to keep). Resolves with the whole text; rejects on an error event.
 */
export async function readChatStream(
  body: ReadableStream<Uint8Array>,
  onDelta: (delta: ChatDelta) => void,
): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let text = "";
  const handle = (events: SseEvent[]): boolean => {
    for (const event of events) {
      const delta = chatDelta(event);
      if (delta.error) throw new Error(delta.error);
      text += delta.content;
      onDelta(delta);
      if (delta.done) return true;
    }
    return false;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (handle(parser.feed(decoder.decode(value, { stream: true })))) return text;
    }
    handle(parser.feed(decoder.decode()));
    handle(parser.end());
    return text;
  } finally {
    reader.releaseLock();
  }
}
