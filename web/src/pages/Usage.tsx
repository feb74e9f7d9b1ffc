import { useQuery } from "@tanstack/react-query";
import { Card, Col, DatePicker, Row, Select, Space, Statistic, Table, Typography } from "antd";
import dayjs, { type Dayjs } from "dayjs";
import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { UsageDaily, UsageDailyRow } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { TimeChart } from "../components/charts";
import { ErrorAlert, PageTitle } from "../components/common";
import { formatMs, formatNumber, formatUsd } from "../lib/format";
import { OTHER, daysBetween, pivotDaily } from "../lib/usage";

const PAGE = 500;
const MAX_PAGES = 20;

async function loadAll(query: { namespace?: string; model?: string; start: string; end: string }): Promise<UsageDaily> {
  const first = await api.daily({ ...query, limit: PAGE, offset: 0 });
  const items = [...first.items];
  for (let page = 1; items.length < first.total && page < MAX_PAGES; page++) {
    const next = await api.daily({ ...query, limit: PAGE, offset: page * PAGE });
    if (next.items.length === 0) break;
    items.push(...next.items);
  }
  return { ...first, items };
}

export function UsagePage() {
  const { t } = useTranslation();
  const { user } = useAuth();
  // A namespace admin may only ask for its own namespace's ledger.
  const own = user?.role === "namespace_admin" ? (user.namespace ?? undefined) : undefined;
  const [namespace, setNamespace] = useState<string | undefined>(own);
  const [model, setModel] = useState<string | undefined>();
  const [range, setRange] = useState<[Dayjs, Dayjs]>([dayjs().subtract(29, "day"), dayjs()]);
  const namespaces = useQuery({ queryKey: ["namespaces"], queryFn: () => api.namespaces() });
  const models = useQuery({ queryKey: ["models"], queryFn: api.models, retry: false });
  const start = range[0].format("YYYY-MM-DD");
  const end = range[1].format("YYYY-MM-DD");
  const daily = useQuery({ queryKey: ["daily", namespace, model, start, end], queryFn: () => loadAll({ namespace, model, start, end }), refetchInterval: 30_000 });

  const by = namespace ? "model" : "namespace";
  const charts = useMemo(() => {
    if (!daily.data) return null;
    const days = daysBetween(daily.data.start, daily.data.end);
    return {
      tokens: pivotDaily(daily.data.items, by, (r) => r.prompt_tokens + r.completion_tokens, days),
      spend: pivotDaily(daily.data.items, by, (r) => r.cost_micro_usd / 1e6, days),
    };
  }, [daily.data, by]);
  const label = (name: string) => (name === OTHER ? t("usage.other") : name);
  const sum = daily.data?.sum;

  return (
    <>
      <PageTitle
        title={t("usage.title")}
        subtitle={t("usage.subtitle")}
        extra={
          <Space wrap>
            <Select allowClear={!own} disabled={!!own} placeholder={t("usage.allNamespaces")} style={{ minWidth: 180 }} value={namespace} onChange={setNamespace} options={(namespaces.data?.items ?? []).map((n) => ({ value: n.name, label: n.name }))} aria-label={t("common.namespace")} />
            <Select allowClear showSearch placeholder={t("usage.allModels")} style={{ minWidth: 200 }} value={model} onChange={setModel} options={(models.data?.items ?? []).map((m) => ({ value: m.name, label: m.name }))} aria-label={t("common.model")} />
            <DatePicker.RangePicker value={range} allowClear={false} onChange={(v) => v && v[0] && v[1] && setRange([v[0], v[1]])} disabledDate={(d) => d.isAfter(dayjs(), "day")} />
          </Space>
        }
      />
      <ErrorAlert error={daily.error} />
      <Row gutter={[16, 16]}>
        {[
          { key: "requests", title: t("overview.requests"), value: formatNumber(sum?.requests ?? 0) },
          { key: "errors", title: t("usage.errors"), value: formatNumber(sum?.errors ?? 0) },
          { key: "prompt", title: t("overview.promptTokens"), value: formatNumber(sum?.prompt_tokens ?? 0) },
          { key: "completion", title: t("overview.completionTokens"), value: formatNumber(sum?.completion_tokens ?? 0) },
          { key: "spend", title: t("overview.spend"), value: formatUsd((sum?.cost_micro_usd ?? 0) / 1e6) },
        ].map((s) => (
          <Col xs={12} md={8} xl={4} key={s.key}>
            <Card size="small" loading={daily.isLoading}>
              <Statistic title={s.title} value={s.value} />
            </Card>
          </Col>
        ))}
        <Col xs={24} xl={12}>
          <TimeChart title={t("usage.tokensPerDay", { by: t(`common.${by}`) })} data={charts?.tokens.rows ?? []} x="day" kind="bar" xFormat={(d) => d.slice(5)} yFormat={(v) => formatNumber(v)} series={(charts?.tokens.names ?? []).map((n) => ({ key: n, name: label(n), stack: "s" }))} testId="usage-tokens" />
        </Col>
        <Col xs={24} xl={12}>
          <TimeChart title={t("usage.spendPerDay", { by: t(`common.${by}`) })} data={charts?.spend.rows ?? []} x="day" kind="bar" xFormat={(d) => d.slice(5)} yFormat={(v) => formatUsd(v)} series={(charts?.spend.names ?? []).map((n) => ({ key: n, name: label(n), stack: "s" }))} testId="usage-spend" />
        </Col>
        <Col span={24}>
          <Table<UsageDailyRow>
            size="small"
            rowKey={(r) => `${r.day}/${r.namespace}/${r.model}`}
            loading={daily.isLoading}
            dataSource={[...(daily.data?.items ?? [])].reverse()}
            pagination={{ pageSize: 25, hideOnSinglePage: true, showSizeChanger: false }}
            columns={[
              { title: t("usage.day"), dataIndex: "day" },
              { title: t("common.namespace"), dataIndex: "namespace" },
              { title: t("common.model"), dataIndex: "model", render: (v: string) => v || <Typography.Text type="secondary">{t("usage.noModel")}</Typography.Text> },
              { title: t("overview.requests"), dataIndex: "requests", align: "right", render: (v: number) => formatNumber(v) },
              { title: t("usage.errors"), dataIndex: "errors", align: "right", render: (v: number) => formatNumber(v) },
              { title: t("overview.promptTokens"), dataIndex: "prompt_tokens", align: "right", render: (v: number) => formatNumber(v) },
              { title: t("overview.completionTokens"), dataIndex: "completion_tokens", align: "right", render: (v: number) => formatNumber(v) },
              { title: t("overview.spend"), dataIndex: "cost_micro_usd", align: "right", render: (v: number) => formatUsd(v / 1e6) },
              { title: t("overview.avgLatency"), align: "right", render: (_, r) => formatMs(r.requests ? r.latency_ms_total / r.requests : null) },
            ]}
          />
        </Col>
      </Row>
    </>
  );
}
