import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Me } from "../api/types";
import { WriteButton } from "../components/common";
import { renderWith } from "../test/render";
import { can, canSee, isReadOnly, type Action } from "./permissions";

const admin: Me = { username: "a", role: "admin" };
const viewer: Me = { username: "v", role: "viewer" };
const nsAdmin: Me = { username: "n", role: "namespace_admin", namespace: "team-a" };
const ACTIONS: Action[] = ["namespace:write", "key:write", "provider:write", "model:write", "price:write", "version:rollback", "user:write"];

describe("can", () => {
  it("lets admins do everything and viewers nothing", () => {
    for (const action of ACTIONS) {
      expect(can(admin, action, "team-a")).toBe(true);
      expect(can(viewer, action, "team-a")).toBe(false);
      expect(can(null, action)).toBe(false);
    }
    expect(isReadOnly(viewer)).toBe(true);
    expect(isReadOnly(admin)).toBe(false);
  });

  it("lets a namespace admin manage its own namespace's keys only", () => {
    expect(can(nsAdmin, "key:write", "team-a")).toBe(true);
    expect(can(nsAdmin, "key:write", "team-b")).toBe(false);
    expect(can(nsAdmin, "key:write")).toBe(false);
    expect(can(nsAdmin, "namespace:write", "team-a")).toBe(false);
    expect(canSee(nsAdmin, "providers")).toBe(false);
    expect(canSee(nsAdmin, "keys")).toBe(true);
    expect(canSee(viewer, "versions")).toBe(true);
    expect(canSee(viewer, "users")).toBe(false);
  });
});

describe("WriteButton", () => {
  it("is enabled for an admin", () => {
    renderWith(<WriteButton action="namespace:write">New namespace</WriteButton>, { user: admin });
    expect(screen.getByRole("button", { name: "New namespace" })).toBeEnabled();
  });

  it("is disabled for a viewer", () => {
    renderWith(<WriteButton action="namespace:write">New namespace</WriteButton>, { user: viewer });
    expect(screen.getByRole("button", { name: "New namespace" })).toBeDisabled();
  });

  it("follows the namespace for a namespace admin", () => {
    renderWith(
      <>
        <WriteButton action="key:write" namespace="team-a">own</WriteButton>
        <WriteButton action="key:write" namespace="team-b">other</WriteButton>
      </>,
      { user: nsAdmin },
    );
    expect(screen.getByRole("button", { name: "own" })).toBeEnabled();
    expect(screen.getByRole("button", { name: "other" })).toBeDisabled();
  });
});
