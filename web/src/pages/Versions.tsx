import { DiffOutlined, RollbackOutlined, SwapOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Card, InputNumber, Space, Table, Tag, Typography } from "antd";
import { useEffect, useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { VersionInfo } from "../api/types";
import { ConfirmButton, ErrorAlert, PageTitle, errorText } from "../components/common";
import { DiffView } from "../components/DiffView";
import { orderedPair } from "../lib/diff";
import { formatTime } from "../lib/format";

export function VersionsPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const [page, setPage] = useState(1);
  const pageSize = 20;
  const versions = useQuery({ queryKey: ["versions", page], queryFn: () => api.versions((page - 1) * pageSize, pageSize), refetchInterval: 15_000 });
  const head = versions.data ? (page === 1 ? versions.data.items[0]?.version : undefined) : undefined;
  const [from, setFrom] = useState<number | null>(null);
  const [to, setTo] = useState<number | null>(null);
  const [compared, setCompared] = useState<[number, number] | null>(null);

  useEffect(() => {
    if (head !== undefined && to === null) {
      setTo(head);
      setFrom(Math.max(head - 1, 1));
    }
  }, [head, to]);

  const diff = useQuery({ queryKey: ["diff", compared], queryFn: () => api.diff(compared![0], compared![1]), enabled: compared !== null });
  const rollback = useMutation({
    mutationFn: api.rollback,
    onSuccess: (v) => {
      message.success(t("versions.rolledBack", { version: v.version, from: v.rolled_back_from }));
      setTo(null);
      setCompared(null);
      void queryClient.invalidateQueries();
    },
    onError: (e) => message.error(errorText(e)),
  });
  const compare = (a: number, b: number) => setCompared(orderedPair(a, b));

  return (
    <>
      <PageTitle title={t("versions.title")} subtitle={t("versions.subtitle")} />
      <ErrorAlert error={versions.error} />
      <Table<VersionInfo>
        size="small"
        rowKey="version"
        loading={versions.isLoading}
        dataSource={versions.data?.items ?? []}
        pagination={{ current: page, pageSize, total: versions.data?.total ?? 0, onChange: setPage, hideOnSinglePage: true, showSizeChanger: false }}
        columns={[
          { title: t("versions.version"), dataIndex: "version", width: 90, render: (v: number) => <Space>{v}{v === head && <Tag color="blue">{t("versions.current")}</Tag>}</Space> },
          { title: t("versions.when"), dataIndex: "created_at", render: (v: string) => formatTime(v), width: 180 },
          { title: t("versions.actor"), dataIndex: "actor" },
          { title: t("versions.action"), dataIndex: "action", render: (v: string, r) => <Space>{v}{r.rolled_back_from ? <Tag color="purple">{t("versions.rollbackOf", { version: r.rolled_back_from })}</Tag> : null}</Space> },
          {
            title: t("common.actions"),
            width: 280,
            render: (_, v) => (
              <Space>
                <Button size="small" icon={<DiffOutlined />} disabled={v.version <= 1} onClick={() => { setFrom(v.version - 1); setTo(v.version); compare(v.version - 1, v.version); }}>
                  {t("versions.diffPrevious")}
                </Button>
                <ConfirmButton size="small" icon={<RollbackOutlined />} action="version:rollback" disabled={v.version === head} confirm={t("versions.confirmRollback", { version: v.version })} onConfirm={() => rollback.mutate(v.version)}>
                  {t("versions.rollback")}
                </ConfirmButton>
              </Space>
            ),
          },
        ]}
      />
      <Card
        size="small"
        style={{ marginTop: 16 }}
        title={
          <Space wrap>
            <SwapOutlined />
            {t("versions.compare")}
            <InputNumber min={0} value={from} onChange={(v) => setFrom(v)} aria-label={t("versions.from")} addonBefore={t("versions.from")} style={{ width: 150 }} />
            <InputNumber min={0} value={to} onChange={(v) => setTo(v)} aria-label={t("versions.to")} addonBefore={t("versions.to")} style={{ width: 150 }} />
            <Button type="primary" disabled={from === null || to === null} onClick={() => compare(from!, to!)}>
              {t("versions.show")}
            </Button>
          </Space>
        }
      >
        <ErrorAlert error={diff.error} />
        {compared ? (
          <>
            <Typography.Paragraph type="secondary">{t("versions.diffTitle", { from: compared[0], to: compared[1] })}</Typography.Paragraph>
            {diff.data && <DiffView changes={diff.data.changes} />}
          </>
        ) : (
          <Typography.Text type="secondary">{t("versions.pickTwo")}</Typography.Text>
        )}
      </Card>
    </>
  );
}
