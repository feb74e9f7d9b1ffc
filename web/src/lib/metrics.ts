// The overview's numbers, from the config center's per-minute usage counters and a sample of
// the request log. The usage API gives sums (requests, errors, tokens, latency_ms_total), so
// rates and the mean latency are derived here; percentiles need individual durations, which
// only the request log has.

import type { RequestRecord, UsageCounters, UsagePoint, UsageSeries } from "../api/types";

export const ZERO: UsageCounters = {
  requests: 0,
  errors: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cost_micro_usd: 0,
  latency_ms_total: 0,
};

const COUNTERS = Object.keys(ZERO) as (keyof UsageCounters)[];

export function addCounters(a: UsageCounters, b: Partial<UsageCounters>): UsageCounters {
  const sum = { ...a };
  for (const name of COUNTERS) sum[name] += b[name] ?? 0;
  return sum;
}

/** Several series on the same buckets (e.g. one per namespace) added up point by point. */
export function sumSeries(series: UsageSeries[]): UsagePoint[] {
  const byTime = new Map<string, UsagePoint>();
  for (const one of series) {
    for (const point of one.points) {
      const key = new Date(point.time).toISOString();
      const previous = byTime.get(key) ?? { time: key, ...ZERO };
      byTime.set(key, { time: key, ...addCounters(previous, point) });
    }
  }
  return [...byTime.values()].sort((a, b) => a.time.localeCompare(b.time));
}

export interface RatePoint {
  time: string;
  requestsPerSecond: number;
  tokensPerMinute: number;
  /** errors / requests in [0, 1]; null when the bucket had no request. */
  errorRate: number | null;
  /** latency_ms_total / requests; null when the bucket had no request. */
  avgLatencyMs: number | null;
  costUsd: number;
}

export function rates(points: UsagePoint[], stepSeconds = 60): RatePoint[] {
  return points.map((p) => ({
    time: p.time,
    requestsPerSecond: p.requests / stepSeconds,
    tokensPerMinute: ((p.prompt_tokens + p.completion_tokens) * 60) / stepSeconds,
    errorRate: p.requests > 0 ? p.errors / p.requests : null,
    avgLatencyMs: p.requests > 0 ? p.latency_ms_total / p.requests : null,
    costUsd: p.cost_micro_usd / 1_000_000,
  }));
}

export function totals(points: UsagePoint[]): UsageCounters {
  return points.reduce<UsageCounters>((sum, p) => addCounters(sum, p), { ...ZERO });
}

/** The p-th percentile (0..100) by linear interpolation between closest ranks; null if empty. */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (Math.min(Math.max(p, 0), 100) / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

export interface LatencyPoint {
  time: string;
  p50: number | null;
  p95: number | null;
  count: number;
}

/** Request durations bucketed per minute (UTC), with p50 and p95 of each bucket. */
export function latencyPercentiles(records: Pick<RequestRecord, "timestamp" | "duration_ms">[], minutes: string[]): LatencyPoint[] {
  const buckets = new Map<string, number[]>();
  for (const record of records) {
    const at = new Date(record.timestamp);
    at.setUTCSeconds(0, 0);
    const key = at.toISOString();
    const list = buckets.get(key) ?? [];
    list.push(record.duration_ms);
    buckets.set(key, list);
  }
  return minutes.map((time) => {
    const key = new Date(time).toISOString();
    const values = buckets.get(key) ?? [];
    return { time, p50: percentile(values, 50), p95: percentile(values, 95), count: values.length };
  });
}

/** Series values with requests in the last `window` buckets (the newest, partial one included). */
export function recent(points: UsagePoint[], window: number): UsagePoint[] {
  return points.slice(Math.max(0, points.length - window));
}
