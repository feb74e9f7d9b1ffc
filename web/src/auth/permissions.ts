// What a signed-in user may change, mirroring the config center's roles (the API refuses
// anything else with 403 anyway; this only keeps the buttons honest).
import type { Me } from "../api/types";

export type Action =
  | "namespace:write"
  | "key:write"
  | "provider:write"
  | "model:write"
  | "price:write"
  | "version:rollback"
  | "user:read"
  | "user:write";

export type Resource = "namespaces" | "keys" | "providers" | "models" | "prices" | "versions" | "users";

export function can(user: Me | null | undefined, action: Action, namespace?: string): boolean {
  if (!user) return false;
  if (user.role === "admin") return true;
  if (user.role === "namespace_admin") {
    return action === "key:write" && namespace !== undefined && namespace === user.namespace;
  }
  return false; // viewer
}

/** Pages a role can open at all (namespace admins see no global configuration). */
export function canSee(user: Me | null | undefined, resource: Resource): boolean {
  if (!user) return false;
  if (resource === "users") return user.role === "admin";
  if (user.role === "namespace_admin") return resource === "namespaces" || resource === "keys";
  return true;
}

export function isReadOnly(user: Me | null | undefined): boolean {
  return !user || user.role === "viewer";
}
