import { DeleteOutlined, EditOutlined, KeyOutlined, PlusOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { App, Button, Col, Form, Input, InputNumber, Modal, Row, Select, Space, Table, Tag, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router";
import { api } from "../api/endpoints";
import { LIMIT_FIELDS, type Namespace } from "../api/types";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";
import { formToPolicy, limitEntries, policyToForm, type PolicyForm } from "../lib/policy";

interface NamespaceForm extends PolicyForm {
  name: string;
  description?: string;
}

export function NamespacesPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const namespaces = useQuery({ queryKey: ["namespaces"], queryFn: () => api.namespaces() });
  const models = useQuery({ queryKey: ["models"], queryFn: api.models, retry: false });
  const [editing, setEditing] = useState<Namespace | "new" | null>(null);
  const [form] = Form.useForm<NamespaceForm>();

  const refresh = () => queryClient.invalidateQueries({ queryKey: ["namespaces"] });
  const save = useMutation({
    mutationFn: async (values: NamespaceForm) => {
      if (editing === "new") {
        return api.createNamespace({ name: values.name.trim(), description: values.description ?? "", policy: formToPolicy(values) });
      }
      const current = editing as Namespace;
      return api.updateNamespace(current.name, { description: values.description ?? "", policy: formToPolicy(values, current.policy) });
    },
    onSuccess: (saved) => {
      message.success(t("namespaces.saved", { name: saved.name }));
      setEditing(null);
      void refresh();
    },
  });
  const remove = useMutation({
    mutationFn: (name: string) => api.deleteNamespace(name),
    onSuccess: () => void refresh(),
    onError: (e) => message.error(errorText(e)),
  });

  const open = (ns: Namespace | "new") => {
    save.reset();
    form.resetFields();
    if (ns === "new") form.setFieldsValue({ name: "", description: "", ...policyToForm(null) });
    else form.setFieldsValue({ name: ns.name, description: ns.description, ...policyToForm(ns.policy) });
    setEditing(ns);
  };

  const modelOptions = (models.data?.items ?? []).flatMap((m) => [m.name, ...(m.aliases ?? [])]).map((v) => ({ value: v, label: v }));

  return (
    <>
      <PageTitle
        title={t("namespaces.title")}
        subtitle={t("namespaces.subtitle")}
        extra={
          <WriteButton type="primary" icon={<PlusOutlined />} action="namespace:write" onClick={() => open("new")}>
            {t("namespaces.new")}
          </WriteButton>
        }
      />
      <ErrorAlert error={namespaces.error} />
      <Table<Namespace>
        rowKey="name"
        loading={namespaces.isLoading}
        dataSource={namespaces.data?.items ?? []}
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        columns={[
          { title: t("common.name"), dataIndex: "name", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          { title: t("common.description"), dataIndex: "description", ellipsis: true },
          { title: t("namespaces.keys"), dataIndex: "key_count", width: 80 },
          {
            title: t("namespaces.models"),
            render: (_, ns) => {
              const allow = ns.policy?.models?.allow ?? [];
              const deny = ns.policy?.models?.deny ?? [];
              if (!allow.length && !deny.length) return <Tag>{t("namespaces.allModels")}</Tag>;
              return (
                <Space size={[0, 4]} wrap>
                  {allow.map((m) => (
                    <Tag color="green" key={`a-${m}`}>{m}</Tag>
                  ))}
                  {deny.map((m) => (
                    <Tag color="red" key={`d-${m}`}>−{m}</Tag>
                  ))}
                </Space>
              );
            },
          },
          {
            title: t("namespaces.limits"),
            render: (_, ns) => {
              const entries = limitEntries(ns.policy);
              if (!entries.length && !ns.policy?.max_tokens) return <Typography.Text type="secondary">{t("namespaces.noLimits")}</Typography.Text>;
              return (
                <Space size={[0, 4]} wrap>
                  {entries.map(([field, value]) => (
                    <Tag key={field}>{t(`limits.${field}`)}: {value}</Tag>
                  ))}
                  {ns.policy?.max_tokens ? <Tag>{t("policy.max_tokens")}: {ns.policy.max_tokens}</Tag> : null}
                </Space>
              );
            },
          },
          {
            title: t("common.actions"),
            width: 260,
            render: (_, ns) => (
              <Space>
                <Button size="small" icon={<KeyOutlined />} onClick={() => navigate(`/keys/${encodeURIComponent(ns.name)}`)}>
                  {t("namespaces.manageKeys")}
                </Button>
                <WriteButton size="small" icon={<EditOutlined />} action="namespace:write" onClick={() => open(ns)}>
                  {t("common.edit")}
                </WriteButton>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="namespace:write" confirm={t("namespaces.confirmDelete", { name: ns.name })} onConfirm={() => remove.mutate(ns.name)} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal
        open={editing !== null}
        title={editing === "new" ? t("namespaces.new") : t("namespaces.edit", { name: (editing as Namespace | null)?.name })}
        onCancel={() => setEditing(null)}
        onOk={() => form.submit()}
        okText={t("common.save")}
        cancelText={t("common.cancel")}
        confirmLoading={save.isPending}
        width={720}
        destroyOnHidden
      >
        <ErrorAlert error={save.error} />
        <Form form={form} layout="vertical" onFinish={(values) => save.mutate(values)}>
          <Form.Item name="name" label={t("common.name")} rules={[{ required: true, pattern: /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, message: t("common.namePattern") }]}>
            <Input disabled={editing !== "new"} />
          </Form.Item>
          <Form.Item name="description" label={t("common.description")}>
            <Input />
          </Form.Item>
          <Row gutter={16}>
            <Col span={12}>
              <Form.Item name="allow" label={t("policy.allow")} extra={t("policy.allowHint")}>
                <Select mode="tags" options={modelOptions} tokenSeparators={[","]} />
              </Form.Item>
            </Col>
            <Col span={12}>
              <Form.Item name="deny" label={t("policy.deny")}>
                <Select mode="tags" options={modelOptions} tokenSeparators={[","]} />
              </Form.Item>
            </Col>
          </Row>
          <Typography.Text strong>{t("namespaces.limits")}</Typography.Text>
          <Row gutter={16} style={{ marginTop: 8 }}>
            {LIMIT_FIELDS.map((field) => (
              <Col span={8} key={field}>
                <Form.Item name={["limits", field]} label={t(`limits.${field}`)}>
                  <InputNumber min={field.startsWith("spend") ? 0.000001 : 1} style={{ width: "100%" }} />
                </Form.Item>
              </Col>
            ))}
            <Col span={8}>
              <Form.Item name="max_tokens" label={t("policy.max_tokens")}>
                <InputNumber min={1} style={{ width: "100%" }} />
              </Form.Item>
            </Col>
            <Col span={8}>
              <Form.Item name="max_prompt_tokens" label={t("policy.max_prompt_tokens")}>
                <InputNumber min={1} style={{ width: "100%" }} />
              </Form.Item>
            </Col>
          </Row>
          <Form.Item name="ip_allow" label={t("policy.ip_allow")} extra={t("policy.ipHint")}>
            <Select mode="tags" tokenSeparators={[",", " "]} open={false} />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}
