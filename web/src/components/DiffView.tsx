import { Empty, Space, Table, Tag, Typography } from "antd";
import { useTranslation } from "react-i18next";
import type { Change } from "../api/types";
import { diffRows, summarize, type ChangeKind, type DiffRow } from "../lib/diff";

const KIND_COLOR: Record<ChangeKind, string> = { added: "green", removed: "red", changed: "blue" };

export function DiffView({ changes }: { changes: Change[] }) {
  const { t } = useTranslation();
  const rows = diffRows(changes);
  if (rows.length === 0) return <Empty description={t("versions.noChanges")} />;
  const counts = summarize(rows);
  return (
    <>
      <Space style={{ marginBottom: 8 }} data-testid="diff-summary">
        {(Object.keys(counts) as ChangeKind[]).map((k) => (
          <Tag key={k} color={KIND_COLOR[k]}>
            {t(`versions.kind.${k}`)}: {counts[k]}
          </Tag>
        ))}
      </Space>
      <Table<DiffRow>
        size="small"
        rowKey="key"
        pagination={rows.length > 50 ? { pageSize: 50 } : false}
        dataSource={rows}
        data-testid="diff-table"
        columns={[
          { title: "", dataIndex: "kind", width: 90, render: (k: ChangeKind) => <Tag color={KIND_COLOR[k]}>{t(`versions.kind.${k}`)}</Tag> },
          {
            title: t("versions.path"),
            render: (_, r) => (
              <span className="aigw-mono">
                <Typography.Text type="secondary">{r.section}</Typography.Text>
                {r.item !== null && <>[<Typography.Text strong>{r.item}</Typography.Text>]</>}
                {r.field && `.${r.field}`}
              </span>
            ),
          },
          { title: t("versions.before"), dataIndex: "before", render: (v: string | null) => (v === null ? null : <div className="aigw-mono aigw-diff-before">{v}</div>) },
          { title: t("versions.after"), dataIndex: "after", render: (v: string | null) => (v === null ? null : <div className="aigw-mono aigw-diff-after">{v}</div>) },
        ]}
      />
    </>
  );
}
