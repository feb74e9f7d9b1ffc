import { describe, expect, it } from "vitest";
import { diffRows, orderedPair, renderValue, splitPath, summarize } from "./diff";

describe("splitPath", () => {
  it("splits a change path into section, item and field", () => {
    expect(splitPath("prices[gpt-4o].input_per_million")).toEqual({ section: "prices", item: "gpt-4o", field: "input_per_million" });
    expect(splitPath("namespaces[x1]")).toEqual({ section: "namespaces", item: "x1", field: "" });
    expect(splitPath("gateway.request_log.bodies")).toEqual({ section: "gateway", item: null, field: "request_log.bodies" });
    expect(splitPath("models[team/a:b.c].targets[0].weight")).toEqual({ section: "models", item: "team/a:b.c", field: "targets[0].weight" });
  });
});

describe("diffRows", () => {
  it("renders each kind of change, objects as sorted JSON, secrets as the API masked them", () => {
    const rows = diffRows([
      { path: "prices[gpt-4o].input_per_million", op: "changed", before: 2.5, after: 2.6 },
      { path: "namespaces[x1]", op: "added", before: null, after: { policy: { models: { allow: ["mock-*"] } }, name: "x1" } },
      { path: "providers[openai].api_key", op: "changed", before: "********", after: "********" },
      { path: "models[old]", op: "removed", before: { name: "old", targets: [] }, after: null },
      { path: "gateway.x", op: "replace", before: null, after: true },
    ]);
    expect(rows.map((r) => r.kind)).toEqual(["changed", "added", "changed", "removed", "added"]);
    expect(rows[0]).toMatchObject({ section: "prices", item: "gpt-4o", field: "input_per_million", before: "2.5", after: "2.6" });
    expect(rows[1].before).toBeNull();
    expect(rows[1].after).toBe('{"name":"x1","policy":{"models":{"allow":["mock-*"]}}}');
    expect(rows[2].after).toBe("********");
    expect(rows[3]).toMatchObject({ before: '{"name":"old","targets":[]}', after: null });
    expect(summarize(rows)).toEqual({ added: 2, removed: 1, changed: 2 });
  });

  it("keeps falsy values visible", () => {
    expect(renderValue(0)).toBe("0");
    expect(renderValue(false)).toBe("false");
    expect(renderValue("")).toBe("");
    expect(renderValue(undefined)).toBeNull();
  });
});

describe("orderedPair", () => {
  it("reads from the older version to the newer one", () => {
    expect(orderedPair(7, 3)).toEqual([3, 7]);
    expect(orderedPair(3, 7)).toEqual([3, 7]);
  });
});
