// Typed calls, one per route of the config center the dashboard uses (and the gateway's
// /readyz, through `aigw web`'s /gateway proxy, for the live state of targets).
import { request, type Query } from "./client";
import type {
  ApiKey,
  GatewayReady,
  KeyCreated,
  LoginOut,
  Me,
  Model,
  Namespace,
  Page,
  Price,
  Provider,
  RequestPage,
  RequestRecordDetail,
  UsageDaily,
  UsageSeries,
  UsageTop,
  UserOut,
  VersionDiff,
  VersionInfo,
} from "./types";

const V1 = "/api/v1";
const e = encodeURIComponent;

export const api = {
  login: (username: string, password: string) =>
    request<LoginOut>(`${V1}/auth/login`, { method: "POST", body: { username, password } }),
  logout: () => request<null>(`${V1}/auth/logout`, { method: "POST" }),
  me: () => request<Me>(`${V1}/auth/me`),

  namespaces: (query?: Query) => request<Page<Namespace>>(`${V1}/namespaces`, { query: { limit: 500, ...query } }),
  createNamespace: (body: Namespace) => request<Namespace>(`${V1}/namespaces`, { method: "POST", body }),
  updateNamespace: (name: string, body: Partial<Namespace>) =>
    request<Namespace>(`${V1}/namespaces/${e(name)}`, { method: "PATCH", body }),
  deleteNamespace: (name: string) => request<null>(`${V1}/namespaces/${e(name)}`, { method: "DELETE" }),

  keys: (namespace: string) =>
    request<Page<ApiKey>>(`${V1}/namespaces/${e(namespace)}/keys`, { query: { limit: 500 } }),
  createKey: (namespace: string, body: { name: string; expires_at?: string | null }) =>
    request<KeyCreated>(`${V1}/namespaces/${e(namespace)}/keys`, { method: "POST", body }),
  updateKey: (namespace: string, name: string, body: { expires_at?: string | null; disabled?: boolean }) =>
    request<ApiKey>(`${V1}/namespaces/${e(namespace)}/keys/${e(name)}`, { method: "PATCH", body }),
  revokeKey: (namespace: string, name: string) =>
    request<ApiKey>(`${V1}/namespaces/${e(namespace)}/keys/${e(name)}/revoke`, { method: "POST" }),
  rotateKey: (namespace: string, name: string) =>
    request<KeyCreated>(`${V1}/namespaces/${e(namespace)}/keys/${e(name)}/rotate`, { method: "POST" }),
  deleteKey: (namespace: string, name: string) =>
    request<null>(`${V1}/namespaces/${e(namespace)}/keys/${e(name)}`, { method: "DELETE" }),

  providers: () => request<Page<Provider>>(`${V1}/providers`, { query: { limit: 500 } }),
  createProvider: (body: Provider) => request<Provider>(`${V1}/providers`, { method: "POST", body }),
  updateProvider: (name: string, body: Partial<Provider>) =>
    request<Provider>(`${V1}/providers/${e(name)}`, { method: "PATCH", body }),
  deleteProvider: (name: string) => request<null>(`${V1}/providers/${e(name)}`, { method: "DELETE" }),

  models: () => request<Page<Model>>(`${V1}/models`, { query: { limit: 500 } }),
  createModel: (body: Model) => request<Model>(`${V1}/models`, { method: "POST", body }),
  updateModel: (name: string, body: Partial<Model>) =>
    request<Model>(`${V1}/models/${e(name)}`, { method: "PATCH", body }),
  deleteModel: (name: string) => request<null>(`${V1}/models/${e(name)}`, { method: "DELETE" }),

  prices: () => request<Page<Price>>(`${V1}/prices`, { query: { limit: 500 } }),
  createPrice: (body: Price) => request<Price>(`${V1}/prices`, { method: "POST", body }),
  updatePrice: (model: string, body: Partial<Price>) =>
    request<Price>(`${V1}/prices/${e(model)}`, { method: "PATCH", body }),
  deletePrice: (model: string) => request<null>(`${V1}/prices/${e(model)}`, { method: "DELETE" }),

  versions: (offset = 0, limit = 20) =>
    request<Page<VersionInfo>>(`${V1}/versions`, { query: { offset, limit } }),
  diff: (from: number, to: number) => request<VersionDiff>(`${V1}/versions/diff`, { query: { from, to } }),
  rollback: (version: number) => request<VersionInfo>(`${V1}/versions/${version}/rollback`, { method: "POST" }),

  series: (query: { dimension: "namespace" | "model"; name: string; resolution?: "minute" | "day"; start?: string; end?: string }) =>
    request<UsageSeries>(`${V1}/usage/series`, { query }),
  top: (dimension: "namespace" | "model", minutes = 60, limit = 10) =>
    request<UsageTop>(`${V1}/usage/top`, { query: { dimension, minutes, limit } }),
  daily: (query: { namespace?: string; model?: string; start?: string; end?: string; offset?: number; limit?: number }) =>
    request<UsageDaily>(`${V1}/usage/daily`, { query }),

  requests: (query: Query) => request<RequestPage>(`${V1}/requests`, { query }),
  requestDetail: (requestId: string) => request<RequestRecordDetail>(`${V1}/requests/${e(requestId)}`),

  users: () => request<Page<UserOut>>(`${V1}/users`, { query: { limit: 500 } }),
  createUser: (body: { username: string; password: string; role: string; namespace?: string | null }) =>
    request<UserOut>(`${V1}/users`, { method: "POST", body }),
  updateUser: (username: string, body: { role?: string; namespace?: string | null; disabled?: boolean; password?: string }) =>
    request<UserOut>(`${V1}/users/${e(username)}`, { method: "PATCH", body }),
  deleteUser: (username: string) => request<null>(`${V1}/users/${e(username)}`, { method: "DELETE" }),

  gatewayReady: () => request<GatewayReady>("/gateway/readyz"),
};
