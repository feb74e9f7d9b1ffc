import { LeftOutlined, ReloadOutlined, RightOutlined } from "@ant-design/icons";
import { useQuery } from "@tanstack/react-query";
import { AutoComplete, Button, DatePicker, Descriptions, Drawer, Input, Select, Space, Table, Tag, Typography } from "antd";
import type { Dayjs } from "dayjs";
import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { useSearchParams } from "react-router";
import { api } from "../api/endpoints";
import type { RequestRecord } from "../api/types";
import { ErrorAlert, PageTitle } from "../components/common";
import { FIRST, current, newer, older, type CursorState } from "../lib/cursor";
import { formatMs, formatNumber, formatTime, formatUsd } from "../lib/format";

export function statusColor(status: number): string {
  if (status >= 500) return "red";
  if (status === 429) return "orange";
  if (status >= 400) return "gold";
  if (status >= 200 && status < 300) return "green";
  return "default";
}

function prettyBody(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

function RequestDetail({ requestId, onClose }: { requestId: string | null; onClose: () => void }) {
  const { t } = useTranslation();
  const detail = useQuery({ queryKey: ["request", requestId], queryFn: () => api.requestDetail(requestId!), enabled: !!requestId });
  const r = detail.data;
  return (
    <Drawer open={!!requestId} onClose={onClose} size={640} title={t("requests.detail")} destroyOnHidden>
      <ErrorAlert error={detail.error} />
      {r && (
        <>
          <Descriptions column={1} size="small" bordered data-testid="request-detail">
            <Descriptions.Item label={t("requests.requestId")}><span className="aigw-mono">{r.request_id}</span></Descriptions.Item>
            <Descriptions.Item label={t("requests.time")}>{formatTime(r.timestamp)}</Descriptions.Item>
            <Descriptions.Item label={t("common.status")}><Tag color={statusColor(r.status)}>{r.status}</Tag>{r.error_type && <Tag>{r.error_type}</Tag>}{r.error_code && <Tag>{r.error_code}</Tag>}</Descriptions.Item>
            <Descriptions.Item label={t("common.namespace")}>{r.namespace}</Descriptions.Item>
            <Descriptions.Item label={t("requests.key")}><span className="aigw-mono">{r.key_prefix ? `${r.key_prefix}…` : "–"}</span></Descriptions.Item>
            <Descriptions.Item label={t("requests.path")}><span className="aigw-mono">{r.path}</span></Descriptions.Item>
            <Descriptions.Item label={t("common.model")}>{r.model ?? "–"}</Descriptions.Item>
            <Descriptions.Item label={t("requests.upstream")}>{r.provider ? `${r.provider} / ${r.upstream_model ?? "–"}` : "–"}</Descriptions.Item>
            <Descriptions.Item label={t("playground.stream")}>{r.stream ? t("common.yes") : t("common.no")}</Descriptions.Item>
            <Descriptions.Item label={t("requests.attempts")}>{r.attempts}</Descriptions.Item>
            <Descriptions.Item label={t("requests.duration")}>{formatMs(r.duration_ms)}</Descriptions.Item>
            <Descriptions.Item label={t("requests.ttft")}>{formatMs(r.ttft_ms)}</Descriptions.Item>
            <Descriptions.Item label={t("requests.tokens")}>
              {t("requests.tokensDetail", { prompt: formatNumber(r.prompt_tokens), completion: formatNumber(r.completion_tokens), cached: formatNumber(r.cached_tokens) })}
            </Descriptions.Item>
            <Descriptions.Item label={t("requests.cost")}>{formatUsd(r.cost_usd)}</Descriptions.Item>
          </Descriptions>
          <Typography.Title level={5} style={{ marginTop: 16 }}>{t("requests.body")}</Typography.Title>
          {r.request_body ? (
            <pre className="aigw-mono" style={{ background: "#fafafa", padding: 12, maxHeight: 400, overflow: "auto" }}>{prettyBody(r.request_body)}</pre>
          ) : (
            <Typography.Text type="secondary">{t("requests.noBody")}</Typography.Text>
          )}
        </>
      )}
    </Drawer>
  );
}

export function RequestsPage() {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const [namespace, setNamespace] = useState<string | undefined>(params.get("namespace") ?? undefined);
  const [model, setModel] = useState<string | undefined>(params.get("model") ?? undefined);
  const [status, setStatus] = useState<string | undefined>(params.get("status") ?? undefined);
  const [requestId, setRequestId] = useState<string | undefined>(params.get("request_id") ?? undefined);
  const [range, setRange] = useState<[Dayjs | null, Dayjs | null] | null>(null);
  const [limit, setLimit] = useState(50);
  const [cursor, setCursor] = useState<CursorState>(FIRST);
  const [open, setOpen] = useState<string | null>(params.get("open"));
  const namespaces = useQuery({ queryKey: ["namespaces"], queryFn: () => api.namespaces() });
  const models = useQuery({ queryKey: ["models"], queryFn: api.models, retry: false });

  const filters = useMemo(
    () => ({ namespace, model, status: status?.trim() || undefined, request_id: requestId?.trim() || undefined, since: range?.[0]?.toISOString(), until: range?.[1]?.toISOString(), limit }),
    [namespace, model, status, requestId, range, limit],
  );
  const page = useQuery({
    queryKey: ["requests", filters, current(cursor)],
    queryFn: () => api.requests({ ...filters, cursor: current(cursor) }),
    refetchInterval: cursor.index === 0 ? 10_000 : false,
    placeholderData: (previous) => previous,
  });
  const change = <T,>(setter: (v: T) => void) => (value: T) => {
    setter(value);
    setCursor(FIRST);
    if (params.size) setParams({}, { replace: true });
  };

  return (
    <>
      <PageTitle title={t("requests.title")} subtitle={t("requests.subtitle")} extra={<Button icon={<ReloadOutlined />} onClick={() => void page.refetch()} loading={page.isFetching}>{t("common.refresh")}</Button>} />
      <Space wrap style={{ marginBottom: 16 }}>
        <Select allowClear placeholder={t("common.namespace")} style={{ minWidth: 160 }} value={namespace} onChange={change(setNamespace)} options={(namespaces.data?.items ?? []).map((n) => ({ value: n.name, label: n.name }))} aria-label={t("common.namespace")} />
        <Select allowClear showSearch placeholder={t("common.model")} style={{ minWidth: 200 }} value={model} onChange={change(setModel)} options={(models.data?.items ?? []).map((m) => ({ value: m.name, label: m.name }))} aria-label={t("common.model")} />
        <AutoComplete allowClear placeholder={t("common.status")} style={{ width: 120 }} value={status} onChange={change(setStatus)} options={["2xx", "4xx", "5xx", "200", "401", "403", "404", "429", "502", "504"].map((v) => ({ value: v }))} aria-label={t("common.status")} />
        <DatePicker.RangePicker showTime allowEmpty={[true, true]} value={range} onChange={change(setRange as (v: typeof range) => void)} placeholder={[t("requests.since"), t("requests.until")]} />
        <Input.Search allowClear placeholder={t("requests.requestId")} style={{ width: 260 }} defaultValue={requestId} onSearch={change(setRequestId)} aria-label={t("requests.requestId")} />
      </Space>
      <ErrorAlert error={page.error} />
      <Table<RequestRecord>
        size="small"
        rowKey="id"
        loading={page.isLoading}
        dataSource={page.data?.items ?? []}
        pagination={false}
        onRow={(r) => ({ onClick: () => setOpen(r.request_id), style: { cursor: "pointer" } })}
        columns={[
          { title: t("requests.time"), dataIndex: "timestamp", render: (v: string) => formatTime(v), width: 170 },
          { title: t("common.status"), dataIndex: "status", render: (v: number) => <Tag color={statusColor(v)}>{v}</Tag>, width: 80 },
          { title: t("common.namespace"), dataIndex: "namespace" },
          { title: t("common.model"), dataIndex: "model", render: (v: string | null) => v ?? "–" },
          { title: t("requests.path"), dataIndex: "path", render: (v: string) => <span className="aigw-mono">{v}</span> },
          { title: t("requests.key"), dataIndex: "key_prefix", render: (v: string | null) => <span className="aigw-mono">{v ? `${v}…` : "–"}</span> },
          { title: t("requests.tokens"), align: "right", render: (_, r) => formatNumber(r.prompt_tokens + r.completion_tokens) },
          { title: t("requests.duration"), dataIndex: "duration_ms", align: "right", render: (v: number) => formatMs(v) },
          { title: t("requests.cost"), dataIndex: "cost_usd", align: "right", render: (v: number) => formatUsd(v) },
          { title: "", render: (_, r) => (r.stream ? <Tag>{t("requests.stream")}</Tag> : null), width: 80 },
        ]}
      />
      <Space style={{ marginTop: 16, display: "flex", justifyContent: "flex-end" }}>
        <Typography.Text type="secondary">{t("requests.page", { page: cursor.index + 1 })}</Typography.Text>
        <Button icon={<LeftOutlined />} disabled={cursor.index === 0} onClick={() => setCursor(newer(cursor))}>{t("requests.newer")}</Button>
        <Button disabled={!page.data?.next_cursor} onClick={() => setCursor(older(cursor, page.data?.next_cursor ?? null))}>{t("requests.older")} <RightOutlined /></Button>
        <Select value={limit} onChange={change(setLimit)} options={[25, 50, 100, 200].map((n) => ({ value: n, label: t("requests.perPage", { count: n }) }))} style={{ width: 130 }} aria-label={t("requests.perPageLabel")} />
      </Space>
      <RequestDetail requestId={open} onClose={() => setOpen(null)} />
    </>
  );
}
