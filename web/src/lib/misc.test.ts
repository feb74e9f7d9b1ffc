import { describe, expect, it } from "vitest";
import type { UsageDailyRow } from "../api/types";
import { keyStatus } from "../pages/Keys";
import { providerChanges } from "../pages/Providers";
import { FIRST, current, newer, older } from "./cursor";
import { formToPolicy, policyToForm } from "./policy";
import { OTHER, daysBetween, pivotDaily } from "./usage";

describe("keyset pagination", () => {
  it("goes older by the page's cursor and back to newer pages", () => {
    let state = FIRST;
    expect(current(state)).toBeNull();
    state = older(state, "c1");
    state = older(state, "c2");
    expect(current(state)).toBe("c2");
    state = newer(state);
    expect(current(state)).toBe("c1");
    state = older(state, "c2b"); // a new branch replaces what followed
    expect(state.stack).toEqual([null, "c1", "c2b"]);
    expect(older(state, null)).toBe(state); // the last page
    expect(newer(FIRST)).toBe(FIRST);
  });
});

describe("policy form", () => {
  it("round-trips, leaving empty fields out", () => {
    const policy = { models: { allow: ["mock-*"] }, limits: { requests_per_minute: 60, spend_per_day_usd: 10 }, max_tokens: 4096, default_max_tokens: 512 };
    expect(formToPolicy(policyToForm(policy), policy)).toEqual(policy);
    expect(formToPolicy({ allow: [" ", ""], deny: [], limits: { requests_per_minute: null }, ip_allow: ["10.0.0.0/8 "] })).toEqual({ ip_allow: ["10.0.0.0/8"] });
  });
});

describe("providerChanges", () => {
  it("sends a credential only when one was typed", () => {
    expect(providerChanges({ name: "p", type: "openai", base_url: " https://x/v1 ", api_key: "" }, false)).toEqual({ type: "openai", base_url: "https://x/v1" });
    expect(providerChanges({ name: " p ", type: "anthropic", base_url: "https://x", api_key: " sk-1 " }, true)).toEqual({ name: "p", type: "anthropic", base_url: "https://x", api_key: "sk-1" });
  });
});

describe("keyStatus", () => {
  it("tells revoked, expired and active keys apart", () => {
    const now = new Date("2026-06-01T00:00:00Z");
    expect(keyStatus({ namespace: "n", name: "k", disabled: true }, now)).toBe("disabled");
    expect(keyStatus({ namespace: "n", name: "k", expires_at: "2026-05-31T23:59:59Z" }, now)).toBe("expired");
    expect(keyStatus({ namespace: "n", name: "k", expires_at: "2026-06-02T00:00:00Z" }, now)).toBe("active");
  });
});

describe("pivotDaily", () => {
  const row = (day: string, namespace: string, model: string, requests: number): UsageDailyRow => ({
    day, namespace, model, requests, errors: 0, prompt_tokens: requests, completion_tokens: 0, cost_micro_usd: 0, latency_ms_total: 0,
  });
  it("makes one row per day and one column per name, the smallest folded into 'other'", () => {
    const days = daysBetween("2026-01-30", "2026-02-01");
    expect(days).toEqual(["2026-01-30", "2026-01-31", "2026-02-01"]);
    const pivot = pivotDaily([row("2026-01-30", "a", "m", 5), row("2026-01-30", "b", "m", 3), row("2026-02-01", "c", "", 1), row("2026-02-01", "a", "m2", 1)], "namespace", (r) => r.prompt_tokens, days, 2);
    expect(pivot.names).toEqual(["a", "b", OTHER]);
    expect(pivot.rows).toEqual([
      { day: "2026-01-30", a: 5, b: 3, [OTHER]: 0 },
      { day: "2026-01-31", a: 0, b: 0, [OTHER]: 0 },
      { day: "2026-02-01", a: 1, b: 0, [OTHER]: 1 },
    ]);
  });
});
