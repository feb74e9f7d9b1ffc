// A version diff (GET /api/v1/versions/diff) as rows to show: each change's path split into
// the resource it touches and the field, its values rendered as short text, and masked secrets
// kept masked.

import type { Change } from "../api/types";

export type ChangeKind = "added" | "removed" | "changed";

export interface DiffRow {
  key: string;
  kind: ChangeKind;
  path: string;
  /** The top-level section and item, e.g. "namespaces" / "team-a". */
  section: string;
  item: string | null;
  field: string;
  before: string | null;
  after: string | null;
}

const PATH = /^([A-Za-z_]+)(?:\[([^\]]*)\])?\.?(.*)$/;

export function splitPath(path: string): { section: string; item: string | null; field: string } {
  const match = PATH.exec(path);
  if (!match) return { section: path, item: null, field: "" };
  return { section: match[1], item: match[2] ?? null, field: match[3] ?? "" };
}

/** A value as one line of text: JSON for objects (keys sorted), "" for absent. */
export function renderValue(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value as Record<string, unknown>)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

function kindOf(change: Change): ChangeKind {
  if (change.op === "added" || change.op === "add") return "added";
  if (change.op === "removed" || change.op === "remove") return "removed";
  if (change.before === undefined || change.before === null) {
    if (change.after !== undefined && change.after !== null) return "added";
  }
  if (change.after === undefined || change.after === null) {
    if (change.before !== undefined && change.before !== null) return "removed";
  }
  return "changed";
}

export function diffRows(changes: Change[]): DiffRow[] {
  return changes.map((change, index) => {
    const { section, item, field } = splitPath(change.path);
    const kind = kindOf(change);
    return {
      key: `${index}:${change.path}`,
      kind,
      path: change.path,
      section,
      item,
      field,
      before: kind === "added" ? null : renderValue(change.before),
      after: kind === "removed" ? null : renderValue(change.after),
    };
  });
}

/** How many changes of each kind, for a one-line summary. */
export function summarize(rows: DiffRow[]): Record<ChangeKind, number> {
  const counts: Record<ChangeKind, number> = { added: 0, removed: 0, changed: 0 };
  for (const row of rows) counts[row.kind] += 1;
  return counts;
}

/** Order two versions so a diff always reads from the older to the newer one. */
export function orderedPair(a: number, b: number): [number, number] {
  return a <= b ? [a, b] : [b, a];
}
