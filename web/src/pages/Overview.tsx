import { ReloadOutlined } from "@ant-design/icons";
import { useQuery } from "@tanstack/react-query";
import { Button, Card, Col, Row, Select, Space, Statistic, Switch, Table, Tooltip, Typography } from "antd";
import { useMemo, useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { RequestRecord, UsageSeries, UsageTopItem } from "../api/types";
import { RankChart, TimeChart } from "../components/charts";
import { ErrorAlert, PageTitle } from "../components/common";
import { formatMs, formatNumber, formatPercent, formatUsd, shortTime } from "../lib/format";
import { latencyPercentiles, rates, recent, sumSeries, totals } from "../lib/metrics";

const WINDOW_MINUTES = 60;
const SAMPLE = 1000;

interface OverviewData {
  series: UsageSeries[];
  topNamespaces: UsageTopItem[];
  topModels: UsageTopItem[];
  sample: RequestRecord[] | null;
  fetchedAt: Date;
}

async function loadOverview(): Promise<OverviewData> {
  const [namespaces, models] = await Promise.all([api.top("namespace", WINDOW_MINUTES, 100), api.top("model", WINDOW_MINUTES, 10)]);
  const start = new Date(Date.now() - (WINDOW_MINUTES - 1) * 60_000).toISOString();
  // The usage API has series per namespace only: the whole gateway is their sum.
  const series = await Promise.all(
    namespaces.items.filter((i) => i.requests > 0).map((i) => api.series({ dimension: "namespace", name: i.name, resolution: "minute", start })),
  );
  let sample: RequestRecord[] | null;
  try {
    sample = (await api.requests({ since: start, limit: SAMPLE })).items;
  } catch {
    sample = null; // no request log: percentiles are not shown
  }
  return { series, topNamespaces: namespaces.items.slice(0, 10), topModels: models.items, sample, fetchedAt: new Date() };
}

function minutesOf(start: Date, count: number): string[] {
  const first = new Date(start);
  first.setUTCSeconds(0, 0);
  return Array.from({ length: count }, (_, i) => new Date(first.getTime() + i * 60_000).toISOString());
}

export function OverviewPage() {
  const { t } = useTranslation();
  const [auto, setAuto] = useState(true);
  const [interval, setIntervalSeconds] = useState(10);
  const query = useQuery({ queryKey: ["overview"], queryFn: loadOverview, refetchInterval: auto ? interval * 1000 : false, refetchIntervalInBackground: false });
  const data = query.data;

  const view = useMemo(() => {
    if (!data) return null;
    const minutes = minutesOf(new Date((data.fetchedAt.getTime() - (WINDOW_MINUTES - 1) * 60_000)), WINDOW_MINUTES);
    const summed = sumSeries(data.series);
    const byTime = new Map(summed.map((p) => [p.time, p]));
    const points = minutes.map((m) => byTime.get(m) ?? { time: m, requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cost_micro_usd: 0, latency_ms_total: 0 });
    const rate = rates(points);
    const pct = data.sample ? latencyPercentiles(data.sample, minutes) : null;
    const chart = points.map((p, i) => ({
      time: p.time,
      rps: rate[i].requestsPerSecond,
      prompt: p.prompt_tokens,
      completion: p.completion_tokens,
      errorRate: rate[i].errorRate === null ? null : rate[i].errorRate! * 100,
      avg: rate[i].avgLatencyMs,
      p50: pct?.[i].p50 ?? null,
      p95: pct?.[i].p95 ?? null,
    }));
    const all = totals(points);
    const last5 = totals(recent(points, 5));
    return {
      chart,
      total: all,
      rpsNow: last5.requests / 300,
      tokensPerMinute: (last5.prompt_tokens + last5.completion_tokens) / 5,
      errorRate: all.requests ? all.errors / all.requests : null,
      avgLatency: all.requests ? all.latency_ms_total / all.requests : null,
      sampleSize: data.sample?.length ?? 0,
      sampleCapped: (data.sample?.length ?? 0) >= SAMPLE,
    };
  }, [data]);

  const topColumns = (dimension: "namespace" | "model") => [
    { title: dimension === "namespace" ? t("common.namespace") : t("common.model"), dataIndex: "name" },
    { title: t("overview.requests"), dataIndex: "requests", align: "right" as const, render: (v: number) => formatNumber(v) },
    { title: t("overview.tokens"), align: "right" as const, render: (_: unknown, r: UsageTopItem) => formatNumber(r.prompt_tokens + r.completion_tokens) },
    { title: t("overview.errorRate"), align: "right" as const, render: (_: unknown, r: UsageTopItem) => formatPercent(r.requests ? r.errors / r.requests : null) },
    { title: t("overview.spend"), align: "right" as const, render: (_: unknown, r: UsageTopItem) => formatUsd(r.cost_micro_usd / 1e6) },
  ];

  return (
    <>
      <PageTitle
        title={t("overview.title")}
        subtitle={t("overview.subtitle", { minutes: WINDOW_MINUTES })}
        extra={
          <Space>
            <Typography.Text type="secondary">{data ? t("overview.updated", { time: data.fetchedAt.toLocaleTimeString() }) : null}</Typography.Text>
            <Tooltip title={t("overview.autoRefresh")}>
              <Switch checked={auto} onChange={setAuto} checkedChildren={t("overview.live")} unCheckedChildren={t("overview.paused")} aria-label={t("overview.autoRefresh")} />
            </Tooltip>
            <Select size="middle" value={interval} onChange={setIntervalSeconds} style={{ width: 90 }} options={[5, 10, 30, 60].map((s) => ({ value: s, label: `${s} s` }))} aria-label={t("overview.interval")} />
            <Button icon={<ReloadOutlined />} onClick={() => void query.refetch()} loading={query.isFetching} aria-label={t("common.refresh")} />
          </Space>
        }
      />
      <ErrorAlert error={query.error} />
      <Row gutter={[16, 16]}>
        {[
          { key: "requests", title: t("overview.requestsWindow", { minutes: WINDOW_MINUTES }), value: formatNumber(view?.total.requests ?? 0) },
          { key: "rps", title: t("overview.rpsNow"), value: formatNumber(view?.rpsNow ?? 0, 3) },
          { key: "tpm", title: t("overview.tpmNow"), value: formatNumber(view?.tokensPerMinute ?? 0, 1) },
          { key: "errors", title: t("overview.errorRate"), value: formatPercent(view?.errorRate ?? null) },
          { key: "latency", title: t("overview.avgLatency"), value: formatMs(view?.avgLatency ?? null) },
          { key: "spend", title: t("overview.spend"), value: formatUsd((view?.total.cost_micro_usd ?? 0) / 1e6) },
        ].map((s) => (
          <Col xs={12} md={8} xl={4} key={s.key}>
            <Card size="small" loading={query.isLoading} data-testid={`stat-${s.key}`}>
              <Statistic title={s.title} value={s.value} />
            </Card>
          </Col>
        ))}
        <Col xs={24} xl={12}>
          <TimeChart title={t("overview.rpsChart")} data={view?.chart ?? []} x="time" kind="area" xFormat={shortTime} yFormat={(v) => formatNumber(v, 3)} series={[{ key: "rps", name: t("overview.rps") }]} testId="chart-rps" />
        </Col>
        <Col xs={24} xl={12}>
          <TimeChart
            title={t("overview.latencyChart")}
            extra={
              <Tooltip title={view?.sampleCapped ? t("overview.percentileCapped", { count: SAMPLE }) : t("overview.percentileNote")}>
                <Typography.Text type="secondary" style={{ fontSize: 12 }}>
                  {data?.sample ? t("overview.percentileSource", { count: view?.sampleSize ?? 0 }) : t("overview.percentileNone")}
                </Typography.Text>
              </Tooltip>
            }
            data={view?.chart ?? []}
            x="time"
            xFormat={shortTime}
            yFormat={(v) => formatMs(v)}
            series={[
              { key: "avg", name: t("overview.avg"), color: "#1677ff" },
              ...(data?.sample ? [{ key: "p50", name: "p50", color: "#52c41a" }, { key: "p95", name: "p95", color: "#fa8c16" }] : []),
            ]}
            testId="chart-latency"
          />
        </Col>
        <Col xs={24} xl={12}>
          <TimeChart title={t("overview.tokensChart")} data={view?.chart ?? []} x="time" kind="bar" xFormat={shortTime} yFormat={(v) => formatNumber(v)} series={[{ key: "prompt", name: t("overview.promptTokens"), stack: "t" }, { key: "completion", name: t("overview.completionTokens"), stack: "t" }]} testId="chart-tokens" />
        </Col>
        <Col xs={24} xl={12}>
          <TimeChart title={t("overview.errorChart")} data={view?.chart ?? []} x="time" xFormat={shortTime} yFormat={(v) => `${formatNumber(v, 1)}%`} series={[{ key: "errorRate", name: t("overview.errorRate"), color: "#f5222d" }]} testId="chart-errors" />
        </Col>
        <Col xs={24} xl={12}>
          <RankChart title={t("overview.topNamespaces")} data={(data?.topNamespaces ?? []) as unknown as Record<string, unknown>[]} nameKey="name" valueKey="requests" valueName={t("overview.requests")} testId="top-namespaces-chart" />
          <Table size="small" rowKey="name" pagination={false} dataSource={data?.topNamespaces ?? []} columns={topColumns("namespace")} data-testid="top-namespaces" style={{ marginTop: 8 }} />
        </Col>
        <Col xs={24} xl={12}>
          <RankChart title={t("overview.topModels")} data={(data?.topModels ?? []) as unknown as Record<string, unknown>[]} nameKey="name" valueKey="requests" valueName={t("overview.requests")} testId="top-models-chart" />
          <Table size="small" rowKey="name" pagination={false} dataSource={data?.topModels ?? []} columns={topColumns("model")} data-testid="top-models" style={{ marginTop: 8 }} />
        </Col>
      </Row>
    </>
  );
}
