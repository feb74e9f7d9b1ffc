import { DeleteOutlined, EditOutlined, LockOutlined, PlusOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Form, Input, Modal, Select, Space, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { Provider } from "../api/types";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";

interface ProviderForm {
  name: string;
  type: string;
  base_url: string;
  api_key?: string;
  count_tokens?: string;
}

/** The body to send: a credential only when one was typed (it is write-only, never read back). */
export function providerChanges(values: ProviderForm, creating: boolean): Partial<Provider> {
  const body: Partial<Provider> = { type: values.type, base_url: values.base_url.trim() };
  if (values.count_tokens) body.count_tokens = values.count_tokens;
  if (creating) body.name = values.name.trim();
  const secret = values.api_key?.trim();
  if (secret) body.api_key = secret;
  return body;
}

export function ProvidersPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const providers = useQuery({ queryKey: ["providers"], queryFn: api.providers });
  const [editing, setEditing] = useState<Provider | "new" | null>(null);
  const [form] = Form.useForm<ProviderForm>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["providers"] });

  const save = useMutation({
    mutationFn: (values: ProviderForm) =>
      editing === "new"
        ? api.createProvider(providerChanges(values, true) as Provider)
        : api.updateProvider((editing as Provider).name, providerChanges(values, false)),
    onSuccess: (saved) => {
      message.success(t("providers.saved", { name: saved.name }));
      setEditing(null);
      void refresh();
    },
  });
  const remove = useMutation({ mutationFn: api.deleteProvider, onSuccess: () => void refresh(), onError: (e) => message.error(errorText(e)) });

  const open = (p: Provider | "new") => {
    save.reset();
    form.resetFields();
    form.setFieldsValue(p === "new" ? { type: "openai", count_tokens: "estimate" } : { name: p.name, type: p.type ?? "openai", base_url: p.base_url, count_tokens: p.count_tokens ?? "estimate", api_key: "" });
    setEditing(p);
  };

  return (
    <>
      <PageTitle
        title={t("providers.title")}
        subtitle={t("providers.subtitle")}
        extra={
          <WriteButton type="primary" icon={<PlusOutlined />} action="provider:write" onClick={() => open("new")}>
            {t("providers.new")}
          </WriteButton>
        }
      />
      <ErrorAlert error={providers.error} />
      <Table<Provider>
        rowKey="name"
        loading={providers.isLoading}
        dataSource={providers.data?.items ?? []}
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        columns={[
          { title: t("common.name"), dataIndex: "name", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          { title: t("providers.type"), dataIndex: "type", render: (v: string) => <Tag>{v ?? "openai"}</Tag> },
          { title: t("providers.baseUrl"), dataIndex: "base_url", render: (v: string) => <span className="aigw-mono">{v}</span> },
          {
            title: t("providers.credential"),
            dataIndex: "api_key_set",
            render: (set: boolean) => (set ? <Tag icon={<LockOutlined />} color="green">{t("providers.credentialSet")}</Tag> : <Tag>{t("providers.credentialNone")}</Tag>),
          },
          {
            title: t("common.actions"),
            width: 200,
            render: (_, p) => (
              <Space>
                <WriteButton size="small" icon={<EditOutlined />} action="provider:write" onClick={() => open(p)}>
                  {t("common.edit")}
                </WriteButton>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="provider:write" confirm={t("providers.confirmDelete", { name: p.name })} onConfirm={() => remove.mutate(p.name)} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal open={editing !== null} title={editing === "new" ? t("providers.new") : t("providers.edit", { name: (editing as Provider | null)?.name })} onCancel={() => setEditing(null)} onOk={() => form.submit()} okText={t("common.save")} cancelText={t("common.cancel")} confirmLoading={save.isPending} destroyOnHidden>
        <ErrorAlert error={save.error} />
        <Form form={form} layout="vertical" onFinish={(values) => save.mutate(values)}>
          <Form.Item name="name" label={t("common.name")} rules={[{ required: true }]}>
            <Input disabled={editing !== "new"} />
          </Form.Item>
          <Form.Item name="type" label={t("providers.type")} rules={[{ required: true }]}>
            <Select options={["openai", "openai-compatible", "anthropic"].map((v) => ({ value: v, label: v }))} />
          </Form.Item>
          <Form.Item name="base_url" label={t("providers.baseUrl")} rules={[{ required: true, type: "url" }]}>
            <Input placeholder="https://api.openai.com/v1" />
          </Form.Item>
          <Form.Item
            name="api_key"
            label={t("providers.apiKey")}
            extra={editing !== "new" && (editing as Provider | null)?.api_key_set ? t("providers.apiKeyKeep") : t("providers.apiKeyHint")}
          >
            <Input.Password autoComplete="new-password" placeholder={editing !== "new" && (editing as Provider | null)?.api_key_set ? "••••••••" : ""} visibilityToggle={false} />
          </Form.Item>
          <Form.Item name="count_tokens" label={t("providers.countTokens")}>
            <Select options={["estimate", "upstream"].map((v) => ({ value: v, label: v }))} />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}
