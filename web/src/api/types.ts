// Shapes of the config center's API (/openapi.json on port 8001), as the dashboard uses them.

export type Role = "admin" | "viewer" | "namespace_admin";

export interface Me {
  username: string;
  role: Role;
  namespace?: string | null;
}

export interface LoginOut {
  token: string;
  token_type: "bearer";
  expires_at: string;
  user: Me;
}

export interface Page<T> {
  items: T[];
  total: number;
  offset: number;
  limit: number;
}

export interface ModelAccess {
  allow?: string[];
  deny?: string[];
}

export interface Limits {
  requests_per_minute?: number | null;
  requests_per_day?: number | null;
  tokens_per_minute?: number | null;
  concurrent_requests?: number | null;
  tokens_per_day?: number | null;
  tokens_per_month?: number | null;
  spend_per_day_usd?: number | null;
  spend_per_month_usd?: number | null;
}

export const LIMIT_FIELDS: (keyof Limits)[] = [
  "requests_per_minute",
  "requests_per_day",
  "tokens_per_minute",
  "concurrent_requests",
  "tokens_per_day",
  "tokens_per_month",
  "spend_per_day_usd",
  "spend_per_month_usd",
];

export interface Policy {
  models?: ModelAccess;
  limits?: Limits;
  max_tokens?: number | null;
  max_prompt_tokens?: number | null;
  default_max_tokens?: number | null;
  ip_allow?: string[];
}

export interface Namespace {
  name: string;
  description?: string;
  policy?: Policy;
  key_count?: number;
}

export interface ApiKey {
  namespace: string;
  name: string;
  prefix?: string | null;
  expires_at?: string | null;
  disabled?: boolean;
  policy?: Policy | null;
}

export interface KeyCreated extends ApiKey {
  key: string;
}

export interface Provider {
  name: string;
  type?: string;
  base_url: string;
  api_key?: string | null;
  api_key_set?: boolean;
  headers?: Record<string, string>;
  count_tokens?: string;
}

export interface Target {
  provider: string;
  model: string;
  weight?: number;
  priority?: number;
}

export interface Routing {
  strategy?: string;
  max_attempts?: number;
  backoff_ms?: number;
  deadline?: number;
}

export interface Model {
  name: string;
  aliases?: string[];
  description?: string;
  targets: Target[];
  owned_by?: string;
  routing?: Routing;
  default_max_tokens?: number | null;
}

export interface Price {
  model: string;
  input_per_million: number;
  output_per_million: number;
  cached_input_per_million?: number | null;
}

export interface VersionInfo {
  version: number;
  created_at: string;
  actor: string;
  action: string;
  rolled_back_from?: number | null;
}

export interface Change {
  path: string;
  op: "added" | "removed" | "changed" | string;
  before?: unknown;
  after?: unknown;
}

export interface VersionDiff {
  from_version: number;
  to_version: number;
  changes: Change[];
}

export interface UsageCounters {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micro_usd: number;
  latency_ms_total: number;
}

export interface UsagePoint extends UsageCounters {
  time: string;
}

export interface UsageSeries {
  dimension: "namespace" | "model";
  name: string;
  resolution: "minute" | "day";
  step_seconds: number;
  start: string;
  end: string;
  points: UsagePoint[];
  total: UsageCounters;
}

export interface UsageTopItem extends UsageCounters {
  name: string;
}

export interface UsageTop {
  dimension: "namespace" | "model";
  minutes: number;
  items: UsageTopItem[];
}

export interface UsageDailyRow extends UsageCounters {
  day: string;
  namespace: string;
  model: string;
}

export interface UsageDaily {
  namespace: string | null;
  model: string | null;
  start: string;
  end: string;
  items: UsageDailyRow[];
  total: number;
  offset: number;
  limit: number;
  sum: UsageCounters;
}

export interface RequestRecord {
  id: number;
  timestamp: string;
  request_id: string;
  namespace: string;
  key_prefix: string | null;
  path: string;
  model: string | null;
  provider: string | null;
  upstream_model: string | null;
  status: number;
  error_type: string | null;
  error_code: string | null;
  stream: boolean;
  attempts: number;
  duration_ms: number;
  ttft_ms: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  cost_usd: number;
  request_body_bytes: number | null;
}

export interface RequestRecordDetail extends RequestRecord {
  request_body: string | null;
}

export interface RequestPage {
  items: RequestRecord[];
  next_cursor: string | null;
  limit: number;
}

export interface UserOut {
  username: string;
  role: Role;
  namespace: string | null;
  disabled: boolean;
  created_at: string;
  locked_until: string | null;
}

/** One target's live state, as the gateway's GET /readyz shows it under "targets". */
export interface TargetHealth {
  circuit?: string;
  in_flight?: number;
  ttfb_ms?: number | null;
  cooling_seconds?: number;
  healthy?: boolean;
  [field: string]: unknown;
}

export interface GatewayReady {
  status: string;
  config_version?: string;
  config_center_version?: number;
  targets?: Record<string, TargetHealth>;
}
