import { DeleteOutlined, PlusOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Form, Input, Modal, Select, Space, Switch, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { Role, UserOut } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { canSee } from "../auth/permissions";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";
import { formatTime } from "../lib/format";

const ROLES: Role[] = ["admin", "viewer", "namespace_admin"];

export function UsersPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const { user } = useAuth();
  const queryClient = useQueryClient();
  const users = useQuery({ queryKey: ["users"], queryFn: api.users, enabled: canSee(user, "users") });
  const namespaces = useQuery({ queryKey: ["namespaces"], queryFn: () => api.namespaces() });
  const [creating, setCreating] = useState(false);
  const [form] = Form.useForm<{ username: string; password: string; role: Role; namespace?: string }>();
  const role = Form.useWatch("role", form);
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["users"] });

  const create = useMutation({
    mutationFn: (v: { username: string; password: string; role: Role; namespace?: string }) =>
      api.createUser({ username: v.username.trim(), password: v.password, role: v.role, namespace: v.role === "namespace_admin" ? v.namespace : null }),
    onSuccess: (u) => {
      message.success(t("users.created", { name: u.username }));
      setCreating(false);
      void refresh();
    },
  });
  const update = useMutation({
    mutationFn: ({ username, body }: { username: string; body: { role?: Role; disabled?: boolean } }) => api.updateUser(username, body),
    onSuccess: () => void refresh(),
    onError: (e) => message.error(errorText(e)),
  });
  const remove = useMutation({ mutationFn: api.deleteUser, onSuccess: () => void refresh(), onError: (e) => message.error(errorText(e)) });

  return (
    <>
      <PageTitle
        title={t("users.title")}
        subtitle={t("users.subtitle")}
        extra={
          <WriteButton type="primary" icon={<PlusOutlined />} action="user:write" onClick={() => { create.reset(); form.resetFields(); form.setFieldsValue({ role: "viewer" }); setCreating(true); }}>
            {t("users.new")}
          </WriteButton>
        }
      />
      <ErrorAlert error={users.error} />
      <Table<UserOut>
        rowKey="username"
        loading={users.isLoading}
        dataSource={users.data?.items ?? []}
        pagination={{ pageSize: 50, hideOnSinglePage: true }}
        columns={[
          { title: t("auth.username"), dataIndex: "username", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          {
            title: t("users.role"),
            render: (_, u) => (
              <Select size="small" value={u.role} style={{ width: 170 }} disabled={u.role === "namespace_admin"} onChange={(r) => update.mutate({ username: u.username, body: { role: r } })} options={ROLES.filter((r) => r !== "namespace_admin" || u.role === r).map((r) => ({ value: r, label: t(`roles.${r}`) }))} />
            ),
          },
          { title: t("common.namespace"), dataIndex: "namespace", render: (v: string | null) => v ?? "–" },
          { title: t("users.enabled"), render: (_, u) => <Switch size="small" checked={!u.disabled} onChange={(on) => update.mutate({ username: u.username, body: { disabled: !on } })} /> },
          { title: t("users.createdAt"), dataIndex: "created_at", render: (v: string) => formatTime(v, false) },
          { title: t("users.locked"), dataIndex: "locked_until", render: (v: string | null) => (v ? <Tag color="red">{formatTime(v)}</Tag> : "–") },
          {
            title: t("common.actions"),
            render: (_, u) => (
              <Space>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="user:write" confirm={t("users.confirmDelete", { name: u.username })} onConfirm={() => remove.mutate(u.username)} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal open={creating} title={t("users.new")} onCancel={() => setCreating(false)} onOk={() => form.submit()} okText={t("common.save")} cancelText={t("common.cancel")} confirmLoading={create.isPending} destroyOnHidden>
        <ErrorAlert error={create.error} />
        <Form form={form} layout="vertical" onFinish={(v) => create.mutate(v)}>
          <Form.Item name="username" label={t("auth.username")} rules={[{ required: true }]}>
            <Input autoComplete="off" />
          </Form.Item>
          <Form.Item name="password" label={t("auth.password")} rules={[{ required: true, min: 12, message: t("users.passwordRule") }]}>
            <Input.Password autoComplete="new-password" />
          </Form.Item>
          <Form.Item name="role" label={t("users.role")} rules={[{ required: true }]}>
            <Select options={ROLES.map((r) => ({ value: r, label: t(`roles.${r}`) }))} />
          </Form.Item>
          {role === "namespace_admin" && (
            <Form.Item name="namespace" label={t("common.namespace")} rules={[{ required: true }]}>
              <Select options={(namespaces.data?.items ?? []).map((n) => ({ value: n.name, label: n.name }))} />
            </Form.Item>
          )}
        </Form>
      </Modal>
    </>
  );
}
