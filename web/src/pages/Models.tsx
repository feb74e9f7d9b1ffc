import { DeleteOutlined, EditOutlined, MinusCircleOutlined, PlusOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Alert, App, Button, Col, Form, Input, InputNumber, Modal, Row, Select, Space, Table, Tag, Tooltip, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { Model, Target, TargetHealth } from "../api/types";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";
import { formatMs } from "../lib/format";

interface ModelForm {
  name: string;
  aliases?: string[];
  description?: string;
  strategy?: string;
  targets: Target[];
}

const CIRCUIT_COLOR: Record<string, string> = { closed: "green", open: "red", half_open: "orange", "half-open": "orange" };

/** The gateway's /readyz names a target "provider/upstream-model". */
export function healthOf(targets: Record<string, TargetHealth> | undefined, target: Target): TargetHealth | undefined {
  return targets?.[`${target.provider}/${target.model}`];
}

function HealthCell({ health }: { health: TargetHealth | undefined }) {
  const { t } = useTranslation();
  if (!health) return <Tooltip title={t("models.noHealthHint")}><Tag>{t("models.noHealth")}</Tag></Tooltip>;
  const circuit = String(health.circuit ?? "unknown");
  const cooling = Number(health.cooling_seconds ?? 0);
  return (
    <Space size={4} wrap>
      <Tag color={CIRCUIT_COLOR[circuit] ?? "default"}>{t(`models.circuit.${circuit}`, { defaultValue: circuit })}</Tag>
      {health.healthy === false && <Tag color="red">{t("models.unhealthy")}</Tag>}
      {cooling > 0 && <Tag color="orange">{t("models.cooling", { seconds: cooling.toFixed(1) })}</Tag>}
      <Typography.Text type="secondary">
        {t("models.inFlight")}: {health.in_flight ?? 0} · TTFB {formatMs(health.ttfb_ms as number | null)}
      </Typography.Text>
    </Space>
  );
}

export function ModelsPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const models = useQuery({ queryKey: ["models"], queryFn: api.models });
  const providers = useQuery({ queryKey: ["providers"], queryFn: api.providers });
  const ready = useQuery({ queryKey: ["gateway-ready"], queryFn: api.gatewayReady, refetchInterval: 5_000, retry: false });
  const [editing, setEditing] = useState<Model | "new" | null>(null);
  const [form] = Form.useForm<ModelForm>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["models"] });

  const save = useMutation({
    mutationFn: (values: ModelForm) => {
      const targets = values.targets.map((tg) => ({ provider: tg.provider, model: tg.model.trim(), weight: tg.weight ?? 1, priority: tg.priority ?? 0 }));
      const aliases = (values.aliases ?? []).map((a) => a.trim()).filter(Boolean);
      if (editing === "new") {
        const body: Model = { name: values.name.trim(), targets, description: values.description ?? "", aliases };
        if (values.strategy) body.routing = { strategy: values.strategy };
        return api.createModel(body);
      }
      const current = editing as Model;
      return api.updateModel(current.name, {
        targets,
        aliases,
        description: values.description ?? "",
        routing: { ...(current.routing ?? {}), strategy: values.strategy ?? "weighted" },
      });
    },
    onSuccess: (saved) => {
      message.success(t("models.saved", { name: saved.name }));
      setEditing(null);
      void refresh();
    },
  });
  const remove = useMutation({ mutationFn: api.deleteModel, onSuccess: () => void refresh(), onError: (e) => message.error(errorText(e)) });

  const open = (m: Model | "new") => {
    save.reset();
    form.resetFields();
    if (m === "new") form.setFieldsValue({ strategy: "weighted", targets: [{ provider: providers.data?.items[0]?.name ?? "", model: "", weight: 1, priority: 0 }] });
    else form.setFieldsValue({ name: m.name, aliases: m.aliases ?? [], description: m.description, strategy: m.routing?.strategy ?? "weighted", targets: m.targets.map((tg) => ({ weight: 1, priority: 0, ...tg })) });
    setEditing(m);
  };

  const live = ready.data?.targets;
  return (
    <>
      <PageTitle
        title={t("models.title")}
        subtitle={t("models.subtitle")}
        extra={
          <WriteButton type="primary" icon={<PlusOutlined />} action="model:write" onClick={() => open("new")}>
            {t("models.new")}
          </WriteButton>
        }
      />
      <ErrorAlert error={models.error} />
      {ready.isError && <Alert type="info" showIcon title={t("models.gatewayUnreachable")} style={{ marginBottom: 16 }} />}
      {ready.data && <Typography.Paragraph type="secondary">{t("models.healthNote")}</Typography.Paragraph>}
      <Table<Model>
        rowKey="name"
        loading={models.isLoading}
        dataSource={models.data?.items ?? []}
        pagination={{ pageSize: 50, hideOnSinglePage: true }}
        expandable={{
          defaultExpandAllRows: false,
          expandedRowRender: (m) => (
            <Table<Target>
              size="small"
              rowKey={(tg) => `${tg.priority ?? 0}:${tg.provider}/${tg.model}`}
              pagination={false}
              dataSource={[...m.targets].sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0))}
              columns={[
                { title: t("models.provider"), dataIndex: "provider" },
                { title: t("models.upstreamModel"), dataIndex: "model", render: (v: string) => <span className="aigw-mono">{v}</span> },
                { title: t("models.weight"), dataIndex: "weight", render: (v?: number) => v ?? 1 },
                { title: t("models.priority"), dataIndex: "priority", render: (v?: number) => v ?? 0 },
                { title: t("models.health"), render: (_, tg) => <HealthCell health={healthOf(live, tg)} /> },
              ]}
            />
          ),
        }}
        columns={[
          { title: t("common.name"), dataIndex: "name", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          { title: t("models.aliases"), dataIndex: "aliases", render: (v?: string[]) => (v ?? []).map((a) => <Tag key={a}>{a}</Tag>) },
          {
            title: t("models.targets"),
            render: (_, m) => (
              <Space size={[0, 4]} wrap>
                {m.targets.map((tg) => {
                  const h = healthOf(live, tg);
                  const color = h ? (CIRCUIT_COLOR[String(h.circuit)] ?? "default") : "default";
                  return (
                    <Tag color={color} key={`${tg.provider}/${tg.model}/${tg.priority ?? 0}`}>
                      {tg.provider}/{tg.model}
                      {(tg.weight ?? 1) !== 1 ? ` ×${tg.weight}` : ""}
                      {(tg.priority ?? 0) !== 0 ? ` P${tg.priority}` : ""}
                    </Tag>
                  );
                })}
              </Space>
            ),
          },
          { title: t("models.strategy"), render: (_, m) => m.routing?.strategy ?? "weighted" },
          {
            title: t("common.actions"),
            width: 200,
            render: (_, m) => (
              <Space>
                <WriteButton size="small" icon={<EditOutlined />} action="model:write" onClick={() => open(m)}>
                  {t("common.edit")}
                </WriteButton>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="model:write" confirm={t("models.confirmDelete", { name: m.name })} onConfirm={() => remove.mutate(m.name)} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal open={editing !== null} width={760} title={editing === "new" ? t("models.new") : t("models.edit", { name: (editing as Model | null)?.name })} onCancel={() => setEditing(null)} onOk={() => form.submit()} okText={t("common.save")} cancelText={t("common.cancel")} confirmLoading={save.isPending} destroyOnHidden>
        <ErrorAlert error={save.error} />
        <Form form={form} layout="vertical" onFinish={(values) => save.mutate(values)}>
          <Row gutter={16}>
            <Col span={12}>
              <Form.Item name="name" label={t("common.name")} rules={[{ required: true }]}>
                <Input disabled={editing !== "new"} />
              </Form.Item>
            </Col>
            <Col span={12}>
              <Form.Item name="aliases" label={t("models.aliases")}>
                <Select mode="tags" open={false} tokenSeparators={[",", " "]} />
              </Form.Item>
            </Col>
          </Row>
          <Row gutter={16}>
            <Col span={12}>
              <Form.Item name="description" label={t("common.description")}>
                <Input />
              </Form.Item>
            </Col>
            <Col span={12}>
              <Form.Item name="strategy" label={t("models.strategy")}>
                <Select options={["weighted", "least_inflight", "lowest_latency"].map((v) => ({ value: v, label: t(`models.strategies.${v}`) }))} />
              </Form.Item>
            </Col>
          </Row>
          <Typography.Text strong>{t("models.targets")}</Typography.Text>
          <Form.List name="targets" rules={[{ validator: async (_, v?: Target[]) => { if (!v || v.length === 0) throw new Error(t("models.needTarget")); } }]}>
            {(fields, { add, remove: drop }, { errors }) => (
              <>
                {fields.map((field) => (
                  <Row gutter={8} key={field.key} align="middle" style={{ marginTop: 8 }}>
                    <Col span={7}>
                      <Form.Item name={[field.name, "provider"]} rules={[{ required: true }]} noStyle>
                        <Select placeholder={t("models.provider")} style={{ width: "100%" }} options={(providers.data?.items ?? []).map((p) => ({ value: p.name, label: p.name }))} />
                      </Form.Item>
                    </Col>
                    <Col span={8}>
                      <Form.Item name={[field.name, "model"]} rules={[{ required: true }]} noStyle>
                        <Input placeholder={t("models.upstreamModel")} />
                      </Form.Item>
                    </Col>
                    <Col span={4}>
                      <Form.Item name={[field.name, "weight"]} noStyle>
                        <InputNumber min={1} placeholder={t("models.weight")} style={{ width: "100%" }} addonBefore="W" />
                      </Form.Item>
                    </Col>
                    <Col span={4}>
                      <Form.Item name={[field.name, "priority"]} noStyle>
                        <InputNumber min={0} placeholder={t("models.priority")} style={{ width: "100%" }} addonBefore="P" />
                      </Form.Item>
                    </Col>
                    <Col span={1}>
                      <MinusCircleOutlined onClick={() => drop(field.name)} aria-label={t("common.delete")} />
                    </Col>
                  </Row>
                ))}
                <Button type="dashed" onClick={() => add({ weight: 1, priority: 0 })} icon={<PlusOutlined />} style={{ marginTop: 8 }}>
                  {t("models.addTarget")}
                </Button>
                <Form.ErrorList errors={errors} />
              </>
            )}
          </Form.List>
        </Form>
      </Modal>
    </>
  );
}
