// Ledger rows (one per day, namespace and model) pivoted into one chart row per day with one
// column per namespace or model; beyond the `top` largest names the rest is summed as "other".
import type { UsageDailyRow } from "../api/types";

export const OTHER = "__other__";

export interface Pivot {
  rows: Record<string, number | string>[];
  names: string[];
}

export function daysBetween(start: string, end: string): string[] {
  const days: string[] = [];
  const at = new Date(`${start}T00:00:00Z`);
  const last = new Date(`${end}T00:00:00Z`);
  while (at.getTime() <= last.getTime() && days.length < 400) {
    days.push(at.toISOString().slice(0, 10));
    at.setUTCDate(at.getUTCDate() + 1);
  }
  return days;
}

export function pivotDaily(
  items: UsageDailyRow[],
  by: "namespace" | "model",
  value: (row: UsageDailyRow) => number,
  days: string[],
  top = 8,
): Pivot {
  const totals = new Map<string, number>();
  for (const row of items) {
    const name = row[by] || "–";
    totals.set(name, (totals.get(name) ?? 0) + value(row));
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([n]) => n);
  const kept = new Set(ranked.slice(0, top));
  const names = ranked.slice(0, top);
  if (ranked.length > top) names.push(OTHER);
  const byDay = new Map<string, Record<string, number | string>>(days.map((d) => [d, { day: d, ...Object.fromEntries(names.map((n) => [n, 0])) }]));
  for (const row of items) {
    const record = byDay.get(row.day);
    if (!record) continue;
    const raw = row[by] || "–";
    const name = kept.has(raw) ? raw : OTHER;
    record[name] = (record[name] as number) + value(row);
  }
  return { rows: [...byDay.values()], names };
}
