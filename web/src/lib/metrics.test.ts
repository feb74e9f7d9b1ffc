import { describe, expect, it } from "vitest";
import type { UsageSeries } from "../api/types";
import { latencyPercentiles, percentile, rates, sumSeries, totals } from "./metrics";

const point = (time: string, requests: number, extra: Partial<Record<string, number>> = {}) => ({
  time,
  requests,
  errors: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cost_micro_usd: 0,
  latency_ms_total: 0,
  ...extra,
});
const series = (name: string, points: ReturnType<typeof point>[]): UsageSeries => ({
  dimension: "namespace",
  name,
  resolution: "minute",
  step_seconds: 60,
  start: points[0].time,
  end: points[points.length - 1].time,
  points,
  total: totals(points),
});

describe("sumSeries and rates", () => {
  it("adds namespaces' series per minute and derives rates", () => {
    const summed = sumSeries([
      series("a", [point("2026-01-01T10:00:00Z", 60, { errors: 6, prompt_tokens: 100, completion_tokens: 20, latency_ms_total: 600 }), point("2026-01-01T10:01:00Z", 0)]),
      series("b", [point("2026-01-01T10:00:00.000Z", 60, { latency_ms_total: 1800 }), point("2026-01-01T10:01:00Z", 30)]),
    ]);
    expect(summed.map((p) => p.requests)).toEqual([120, 30]);
    const [first, second] = rates(summed);
    expect(first.requestsPerSecond).toBe(2);
    expect(first.tokensPerMinute).toBe(120);
    expect(first.errorRate).toBeCloseTo(0.05);
    expect(first.avgLatencyMs).toBe(20);
    expect(second.errorRate).toBe(0);
    expect(rates([point("2026-01-01T10:02:00Z", 0)])[0]).toMatchObject({ errorRate: null, avgLatencyMs: null });
  });
});

describe("percentile", () => {
  it("interpolates between ranks", () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5], 95)).toBe(5);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile(Array.from({ length: 101 }, (_, i) => i), 95)).toBe(95);
  });

  it("buckets request durations per UTC minute", () => {
    const points = latencyPercentiles(
      [
        { timestamp: "2026-01-01T10:00:05Z", duration_ms: 10 },
        { timestamp: "2026-01-01T10:00:59.999Z", duration_ms: 30 },
        { timestamp: "2026-01-01T10:01:00Z", duration_ms: 7 },
      ],
      ["2026-01-01T10:00:00Z", "2026-01-01T10:01:00.000Z", "2026-01-01T10:02:00Z"],
    );
    expect(points.map((p) => [p.count, p.p50])).toEqual([
      [2, 20],
      [1, 7],
      [0, null],
    ]);
  });
});
