import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { renderWith } from "../test/render";
import { DiffView } from "./DiffView";

describe("DiffView", () => {
  it("shows each change with its before and after values and a summary", () => {
    renderWith(
      <DiffView
        changes={[
          { path: "prices[gpt-4o].input_per_million", op: "changed", before: 2.5, after: 2.6 },
          { path: "namespaces[team-a]", op: "added", before: null, after: { name: "team-a" } },
        ]}
      />,
    );
    expect(screen.getByText("2.5")).toHaveClass("aigw-diff-before");
    expect(screen.getByText("2.6")).toHaveClass("aigw-diff-after");
    expect(screen.getByText('{"name":"team-a"}')).toHaveClass("aigw-diff-after");
    expect(screen.getByTestId("diff-summary")).toHaveTextContent("added: 1");
    expect(screen.getByTestId("diff-summary")).toHaveTextContent("changed: 1");
  });

  it("says so when nothing changed, in Chinese too", () => {
    renderWith(<DiffView changes={[]} />, { language: "zh-CN" });
    expect(screen.getAllByText("没有变更").length).toBeGreaterThan(0);
  });
});
