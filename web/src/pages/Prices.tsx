import { DeleteOutlined, EditOutlined, PlusOutlined } from "@ant-design/icons";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { App, AutoComplete, Form, InputNumber, Modal, Space, Table, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api } from "../api/endpoints";
import type { Price } from "../api/types";
import { ConfirmButton, ErrorAlert, PageTitle, WriteButton, errorText } from "../components/common";
import { formatUsd } from "../lib/format";

export function PricesPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const queryClient = useQueryClient();
  const prices = useQuery({ queryKey: ["prices"], queryFn: api.prices });
  const models = useQuery({ queryKey: ["models"], queryFn: api.models, retry: false });
  const [editing, setEditing] = useState<Price | "new" | null>(null);
  const [form] = Form.useForm<Price>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["prices"] });
  const save = useMutation({
    mutationFn: (values: Price) => {
      const body: Price = {
        model: values.model.trim(),
        input_per_million: values.input_per_million,
        output_per_million: values.output_per_million,
        cached_input_per_million: values.cached_input_per_million ?? null,
      };
      if (editing === "new") {
        if (body.cached_input_per_million === null) delete body.cached_input_per_million;
        return api.createPrice(body);
      }
      const { model, ...changes } = body;
      return api.updatePrice(model, changes);
    },
    onSuccess: (saved) => {
      message.success(t("prices.saved", { model: saved.model }));
      setEditing(null);
      void refresh();
    },
  });
  const remove = useMutation({ mutationFn: api.deletePrice, onSuccess: () => void refresh(), onError: (e) => message.error(errorText(e)) });
  const open = (p: Price | "new") => {
    save.reset();
    form.resetFields();
    if (p !== "new") form.setFieldsValue(p);
    setEditing(p);
  };
  const perMillion = (v: number | null | undefined) => (v === null || v === undefined ? "–" : formatUsd(v));

  return (
    <>
      <PageTitle
        title={t("prices.title")}
        subtitle={t("prices.subtitle")}
        extra={
          <WriteButton type="primary" icon={<PlusOutlined />} action="price:write" onClick={() => open("new")}>
            {t("prices.new")}
          </WriteButton>
        }
      />
      <ErrorAlert error={prices.error} />
      <Table<Price>
        rowKey="model"
        loading={prices.isLoading}
        dataSource={prices.data?.items ?? []}
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        columns={[
          { title: t("common.model"), dataIndex: "model", render: (v: string) => <Typography.Text strong>{v}</Typography.Text> },
          { title: t("prices.input"), dataIndex: "input_per_million", align: "right", render: perMillion },
          { title: t("prices.output"), dataIndex: "output_per_million", align: "right", render: perMillion },
          { title: t("prices.cachedInput"), dataIndex: "cached_input_per_million", align: "right", render: perMillion },
          {
            title: t("common.actions"),
            width: 200,
            render: (_, p) => (
              <Space>
                <WriteButton size="small" icon={<EditOutlined />} action="price:write" onClick={() => open(p)}>
                  {t("common.edit")}
                </WriteButton>
                <ConfirmButton size="small" danger icon={<DeleteOutlined />} action="price:write" confirm={t("prices.confirmDelete", { model: p.model })} onConfirm={() => remove.mutate(p.model)} aria-label={t("common.delete")} />
              </Space>
            ),
          },
        ]}
      />
      <Modal open={editing !== null} title={editing === "new" ? t("prices.new") : t("prices.edit", { model: (editing as Price | null)?.model })} onCancel={() => setEditing(null)} onOk={() => form.submit()} okText={t("common.save")} cancelText={t("common.cancel")} confirmLoading={save.isPending} destroyOnHidden>
        <ErrorAlert error={save.error} />
        <Form form={form} layout="vertical" onFinish={(values) => save.mutate(values)}>
          <Form.Item name="model" label={t("common.model")} rules={[{ required: true }]}>
            <AutoComplete disabled={editing !== "new"} options={(models.data?.items ?? []).map((m) => ({ value: m.name }))} filterOption />
          </Form.Item>
          <Form.Item name="input_per_million" label={t("prices.input")} rules={[{ required: true }]}>
            <InputNumber min={0} prefix="$" style={{ width: "100%" }} />
          </Form.Item>
          <Form.Item name="output_per_million" label={t("prices.output")} rules={[{ required: true }]}>
            <InputNumber min={0} prefix="$" style={{ width: "100%" }} />
          </Form.Item>
          <Form.Item name="cached_input_per_million" label={t("prices.cachedInput")}>
            <InputNumber min={0} prefix="$" style={{ width: "100%" }} />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}
