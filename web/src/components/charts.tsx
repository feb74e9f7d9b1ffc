import { Card, Empty } from "antd";
import type { ReactNode } from "react";
import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

export const COLORS = ["#1677ff", "#52c41a", "#fa8c16", "#eb2f96", "#722ed1", "#13c2c2", "#faad14", "#a0d911", "#2f54eb", "#f5222d"];

export interface SeriesSpec {
  key: string;
  name: string;
  color?: string;
  stack?: string;
}

interface ChartProps {
  title: ReactNode;
  data: Record<string, unknown>[];
  x: string;
  series: SeriesSpec[];
  kind?: "line" | "area" | "bar";
  xFormat?: (value: string) => string;
  yFormat?: (value: number) => string;
  height?: number;
  extra?: ReactNode;
  testId?: string;
}

export function TimeChart({ title, data, x, series, kind = "line", xFormat, yFormat, height = 240, extra, testId }: ChartProps) {
  const tooltipFormat = (value: unknown) => (typeof value === "number" && yFormat ? yFormat(value) : String(value ?? "–"));
  const axes = (
    <>
      <CartesianGrid strokeDasharray="3 3" vertical={false} />
      <XAxis dataKey={x} tickFormatter={xFormat} minTickGap={24} fontSize={12} />
      <YAxis tickFormatter={yFormat} width={64} fontSize={12} allowDecimals />
      <Tooltip labelFormatter={(label) => (xFormat ? xFormat(String(label)) : String(label))} formatter={tooltipFormat} isAnimationActive={false} />
      {series.length > 1 && <Legend />}
    </>
  );
  let chart: ReactNode;
  if (kind === "bar") {
    chart = (
      <BarChart data={data}>
        {axes}
        {series.map((s, i) => (
          <Bar key={s.key} dataKey={s.key} name={s.name} fill={s.color ?? COLORS[i % COLORS.length]} stackId={s.stack} isAnimationActive={false} />
        ))}
      </BarChart>
    );
  } else if (kind === "area") {
    chart = (
      <AreaChart data={data}>
        {axes}
        {series.map((s, i) => (
          <Area key={s.key} type="monotone" dataKey={s.key} name={s.name} stroke={s.color ?? COLORS[i % COLORS.length]} fill={s.color ?? COLORS[i % COLORS.length]} fillOpacity={0.15} stackId={s.stack} isAnimationActive={false} />
        ))}
      </AreaChart>
    );
  } else {
    chart = (
      <LineChart data={data}>
        {axes}
        {series.map((s, i) => (
          <Line key={s.key} type="monotone" dataKey={s.key} name={s.name} stroke={s.color ?? COLORS[i % COLORS.length]} dot={{ r: 2 }} connectNulls={false} isAnimationActive={false} strokeWidth={2} />
        ))}
      </LineChart>
    );
  }
  return (
    <Card title={title} size="small" extra={extra} data-testid={testId}>
      {data.length === 0 ? (
        <Empty style={{ height: height - 40 }} />
      ) : (
        <div style={{ width: "100%", height }}>
          <ResponsiveContainer width="100%" height="100%">
            {chart as React.ReactElement}
          </ResponsiveContainer>
        </div>
      )}
    </Card>
  );
}

export function RankChart({ title, data, valueKey, nameKey, valueName, height = 240, testId }: { title: ReactNode; data: Record<string, unknown>[]; valueKey: string; nameKey: string; valueName: string; height?: number; testId?: string }) {
  return (
    <Card title={title} size="small" data-testid={testId}>
      {data.length === 0 ? (
        <Empty style={{ height: height - 40 }} />
      ) : (
        <div style={{ width: "100%", height }}>
          <ResponsiveContainer width="100%" height="100%">
            <BarChart data={data} layout="vertical" margin={{ left: 16 }}>
              <CartesianGrid strokeDasharray="3 3" horizontal={false} />
              <XAxis type="number" fontSize={12} allowDecimals={false} />
              <YAxis type="category" dataKey={nameKey} width={140} fontSize={12} />
              <Tooltip isAnimationActive={false} />
              <Bar dataKey={valueKey} name={valueName} fill={COLORS[0]} isAnimationActive={false} />
            </BarChart>
          </ResponsiveContainer>
        </div>
      )}
    </Card>
  );
}
