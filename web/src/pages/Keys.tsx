import { DeleteOutlined, EditOutlined, ExperimentOutlined, PlusOutlined, ReloadOutlined, StopOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Alert, App, Button, DatePicker, Form, Input, Modal, Select, Space, Table, Tag, Typography } from "antd";
import dayjs, { type Dayjs } from "dayjs";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { useNavigate, useParams } from "react-router";
import { api } from "../api/endpoints";
import type { ApiKey, KeyCreated } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";
import { formatTime } from "../lib/format";

export type KeyStatus = "active" | "disabled" | "expired";

export function keyStatus(key: ApiKey, now: Date = new Date()): KeyStatus {
  if (key.disabled) return "disabled";
  if (key.expires_at && new Date(key.expires_at).getTime() <= now.getTime()) return "expired";
  return "active";
}

const STATUS_COLOR: Record<KeyStatus, string> = { active: "green", disabled: "red", expired: "orange" };

export function ShownOnce({ created, onClose }: { created: KeyCreated | null; onClose: () => void }) {
  const { t } = useTranslation();
  const navigate = useNavigate();
  return (
    <Modal
      open={created !== null}
      title={t("keys.createdTitle", { name: created?.name })}
      onCancel={onClose}
      footer={[
        <Button key="play" icon={<ExperimentOutlined />} onClick={() => navigate("/playground", { state: { key: created?.key, namespace: created?.namespace } })}>
          {t("keys.tryInPlayground")}
        </Button>,
        <Button key="done" type="primary" onClick={onClose}>
          {t("keys.copiedDone")}
        </Button>,
      ]}
      maskClosable={false}
    >
      <Alert type="warning" showIcon title={t("keys.shownOnce")} style={{ marginBottom: 16 }} />
      <Typography.Paragraph copyable={{ text: created?.key ?? "", tooltips: [t("keys.copy"), t("keys.copied")] }} className="aigw-mono" data-testid="new-key" style={{ background: "#fafafa", padding: 12, border: "1px solid #f0f0f0", borderRadius: 6 }}>
        {created?.key}
      </Typography.Paragraph>
    </Modal>
  );
}

export function KeysPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const { user } = useAuth();
  const params = useParams();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const namespaces = useQuery({ queryKey: ["namespaces"], queryFn: () => api.namespaces() });
  const names = (namespaces.data?.items ?? []).map((n) => n.name);
  const namespace = params.namespace ?? (user?.role === "namespace_admin" ? (user.namespace ?? undefined) : names[0]);
  const keys = useQuery({ queryKey: ["keys", namespace], queryFn: () => api.keys(namespace!), enabled: !!namespace });
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<ApiKey | null>(null);
  const [created, setCreated] = useState<KeyCreated | null>(null);
  const [form] = Form.useForm<{ name: string; expires_at?: Dayjs | null }>();
  const [expiryForm] = Form.useForm<{ expires_at?: Dayjs | null }>();

  const refresh = () => {
    void queryClient.invalidateQueries({ queryKey: ["keys", namespace] });
    void queryClient.invalidateQueries({ queryKey: ["namespaces"] });
  };
  const create = useMutation({
    mutationFn: (values: { name: string; expires_at?: Dayjs | null }) =>
      api.createKey(namespace!, { name: values.name.trim(), expires_at: values.expires_at ? values.expires_at.toISOString() : null }),
    onSuccess: (key) => {
      setCreating(false);
      setCreated(key);
      refresh();
    },
  });
  const act = useMutation({
    mutationFn: async ({ kind, key }: { kind: "revoke" | "enable" | "rotate" | "delete"; key: ApiKey }) => {
      if (kind === "revoke") return api.revokeKey(key.namespace, key.name);
      if (kind === "enable") return api.updateKey(key.namespace, key.name, { disabled: false });
      if (kind === "rotate") return api.rotateKey(key.namespace, key.name);
      return api.deleteKey(key.namespace, key.name);
    },
    onSuccess: (result, { kind, key }) => {
      if (kind === "rotate" && result && "key" in result) setCreated(result as KeyCreated);
      else message.success(t(`keys.done.${kind}`, { name: key.name }));
      refresh();
    },
    onError: (e) => message.error(errorText(e)),
  });
  const expiry = useMutation({
    mutationFn: (values: { expires_at?: Dayjs | null }) =>
      api.updateKey(editing!.namespace, editing!.name, { expires_at: values.expires_at ? values.expires_at.toISOString() : null }),
    onSuccess: () => {
      setEditing(null);
      refresh();
    },
  });

  return (
    <>
      <PageTitle
        title={t("keys.title")}
        subtitle={t("keys.subtitle")}
        extra={
          <Space>
            <Select
              aria-label={t("common.namespace")}
              style={{ minWidth: 200 }}
              value={namespace}
              placeholder={t("common.namespace")}
              options={names.map((n) => ({ value: n, label: n }))}
              onChange={(ns) => navigate(`/keys/${encodeURIComponent(ns)}`)}
              disabled={user?.role === "namespace_admin"}
            />
            <WriteButton
              type="primary"
              icon={<PlusOutlined />}
              action="key:write"
              namespace={namespace}
              disabled={!namespace}
              onClick={() => {
                create.reset();
                form.resetFields();
                setCreating(true);
              }}
            >
              {t("keys.new")}
            </WriteButton>
          </Space>
        }
      />
      <ErrorAlert error={namespaces.error ?? keys.error} />
      <Table<ApiKey>
        rowKey="name"
        loading={keys.isLoading}
        dataSource={keys.data?.items ?? []}
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        columns={[
          { title: t("common.name"), dataIndex: "name", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          { title: t("keys.prefix"), dataIndex: "prefix", render: (v: string | null) => <span className="aigw-mono">{v ? `${v}…` : "–"}</span> },
          {
            title: t("common.status"),
            render: (_, key) => {
              const status = keyStatus(key);
              return <Tag color={STATUS_COLOR[status]}>{t(`keys.status.${status}`)}</Tag>;
            },
          },
          { title: t("keys.expires"), dataIndex: "expires_at", render: (v: string | null) => (v ? formatTime(v, false) : t("keys.never")) },
          {
            title: t("common.actions"),
            width: 380,
            render: (_, key) => (
              <Space wrap>
                {key.disabled ? (
                  <WriteButton size="small" action="key:write" namespace={key.namespace} onClick={() => act.mutate({ kind: "enable", key })}>
                    {t("keys.enable")}
                  </WriteButton>
                ) : (
                  <ConfirmButton size="small" icon={<StopOutlined />} action="key:write" namespace={key.namespace} confirm={t("keys.confirmRevoke", { name: key.name })} onConfirm={() => act.mutate({ kind: "revoke", key })}>
                    {t("keys.revoke")}
                  </ConfirmButton>
                )}
                <ConfirmButton size="small" icon={<ReloadOutlined />} action="key:write" namespace={key.namespace} confirm={t("keys.confirmRotate", { name: key.name })} onConfirm={() => act.mutate({ kind: "rotate", key })}>
                  {t("keys.rotate")}
                </ConfirmButton>
                <WriteButton
                  size="small"
                  icon={<EditOutlined />}
                  action="key:write"
                  namespace={key.namespace}
                  onClick={() => {
                    expiry.reset();
                    expiryForm.setFieldsValue({ expires_at: key.expires_at ? dayjs(key.expires_at) : null });
                    setEditing(key);
                  }}
                >
                  {t("keys.expiry")}
                </WriteButton>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="key:write" namespace={key.namespace} confirm={t("keys.confirmDelete", { name: key.name })} onConfirm={() => act.mutate({ kind: "delete", key })} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal open={creating} title={t("keys.newIn", { namespace })} onCancel={() => setCreating(false)} onOk={() => form.submit()} okText={t("keys.create")} cancelText={t("common.cancel")} confirmLoading={create.isPending} destroyOnHidden>
        <ErrorAlert error={create.error} />
        <Form form={form} layout="vertical" onFinish={(values) => create.mutate(values)}>
          <Form.Item name="name" label={t("common.name")} rules={[{ required: true, pattern: /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, message: t("common.namePattern") }]}>
            <Input autoFocus />
          </Form.Item>
          <Form.Item name="expires_at" label={t("keys.expires")} extra={t("keys.expiresHint")}>
            <DatePicker showTime style={{ width: "100%" }} disabledDate={(d) => d.isBefore(dayjs().startOf("day"))} />
          </Form.Item>
        </Form>
      </Modal>
      <Modal open={editing !== null} title={t("keys.expiryOf", { name: editing?.name })} onCancel={() => setEditing(null)} onOk={() => expiryForm.submit()} okText={t("common.save")} cancelText={t("common.cancel")} confirmLoading={expiry.isPending} destroyOnHidden>
        <ErrorAlert error={expiry.error} />
        <Form form={expiryForm} layout="vertical" onFinish={(values) => expiry.mutate(values)}>
          <Form.Item name="expires_at" label={t("keys.expires")} extra={t("keys.expiresHint")}>
            <DatePicker showTime allowClear style={{ width: "100%" }} />
          </Form.Item>
        </Form>
      </Modal>
      <ShownOnce created={created} onClose={() => setCreated(null)} />
    </>
  );
}
