// A namespace policy as a flat form and back: empty fields are left out of the document (the
// gateway's defaults apply), lists are trimmed.
import { LIMIT_FIELDS, type Limits, type Policy } from "../api/types";

export interface PolicyForm {
  allow?: string[];
  deny?: string[];
  max_tokens?: number | null;
  max_prompt_tokens?: number | null;
  ip_allow?: string[];
  limits?: Limits;
}

export function policyToForm(policy: Policy | undefined | null): PolicyForm {
  return {
    allow: policy?.models?.allow ?? [],
    deny: policy?.models?.deny ?? [],
    max_tokens: policy?.max_tokens ?? null,
    max_prompt_tokens: policy?.max_prompt_tokens ?? null,
    ip_allow: policy?.ip_allow ?? [],
    limits: { ...(policy?.limits ?? {}) },
  };
}

const clean = (list: string[] | undefined) => (list ?? []).map((s) => s.trim()).filter(Boolean);
const present = (v: number | null | undefined): v is number => typeof v === "number" && !Number.isNaN(v);

export function formToPolicy(form: PolicyForm, base?: Policy | null): Policy {
  const policy: Policy = {};
  // Fields this form does not edit are kept as they were.
  if (base?.default_max_tokens) policy.default_max_tokens = base.default_max_tokens;
  const allow = clean(form.allow);
  const deny = clean(form.deny);
  if (allow.length || deny.length) {
    policy.models = {};
    if (allow.length) policy.models.allow = allow;
    if (deny.length) policy.models.deny = deny;
  }
  const limits: Limits = {};
  for (const field of LIMIT_FIELDS) {
    const value = form.limits?.[field];
    if (present(value)) limits[field] = value;
  }
  if (Object.keys(limits).length) policy.limits = limits;
  if (present(form.max_tokens)) policy.max_tokens = form.max_tokens;
  if (present(form.max_prompt_tokens)) policy.max_prompt_tokens = form.max_prompt_tokens;
  const ips = clean(form.ip_allow);
  if (ips.length) policy.ip_allow = ips;
  return policy;
}

/** Short "label: value" pairs of a policy's limits, for a table cell. */
export function limitEntries(policy: Policy | undefined | null): [keyof Limits, number][] {
  const limits = policy?.limits ?? {};
  return LIMIT_FIELDS.filter((f) => present(limits[f])).map((f) => [f, limits[f] as number]);
}
