import { ClearOutlined, SendOutlined, StopOutlined, SyncOutlined } from "@ant-design/icons";
import { useQuery } from "@tanstack/react-query";
import { Alert, Button, Card, Col, Descriptions, Form, Input, InputNumber, Row, Select, Space, Switch, Tag, Typography } from "antd";
import { useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import { Link, useLocation } from "react-router";
import { api } from "../api/endpoints";
import { errorText, PageTitle } from "../components/common";
import { listModels, sendChat, type ChatMessage, type ChatResult } from "../lib/chat";
import { formatMs, formatNumber } from "../lib/format";

interface Turn extends ChatMessage {
  result?: ChatResult;
  error?: string;
  pending?: boolean;
}

export function PlaygroundPage() {
  const { t } = useTranslation();
  const location = useLocation();
  const given = (location.state as { key?: string } | null)?.key ?? "";
  const [key, setKey] = useState(given);
  const [model, setModel] = useState<string | undefined>();
  const [system, setSystem] = useState("");
  const [prompt, setPrompt] = useState("");
  const [stream, setStream] = useState(true);
  const [maxTokens, setMaxTokens] = useState<number | null>(256);
  const [turns, setTurns] = useState<Turn[]>([]);
  const [busy, setBusy] = useState(false);
  const abort = useRef<AbortController | null>(null);
  const configured = useQuery({ queryKey: ["models"], queryFn: api.models, retry: false });
  const allowed = useQuery({ queryKey: ["gateway-models", key], queryFn: ({ signal }) => listModels(key, signal), enabled: key.startsWith("sk-") && key.length > 20, retry: false });

  const options = allowed.data ?? (configured.data?.items ?? []).flatMap((m) => [m.name, ...(m.aliases ?? [])]);
  useEffect(() => {
    if (!model && options.length) setModel(options.includes("demo-chat") ? "demo-chat" : options[0]);
  }, [model, options]);
  useEffect(() => () => abort.current?.abort(), []);

  const send = async () => {
    const text = prompt.trim();
    if (!text || !model || !key) return;
    const history: ChatMessage[] = turns.filter((x) => !x.error).map(({ role, content }) => ({ role, content }));
    const messages: ChatMessage[] = [...(system.trim() ? [{ role: "system" as const, content: system.trim() }] : []), ...history, { role: "user", content: text }];
    setPrompt("");
    setTurns((prev) => [...prev, { role: "user", content: text }, { role: "assistant", content: "", pending: true }]);
    setBusy(true);
    const controller = new AbortController();
    abort.current = controller;
    const update = (patch: Partial<Turn>) =>
      setTurns((prev) => {
        const next = [...prev];
        next[next.length - 1] = { ...next[next.length - 1], ...patch };
        return next;
      });
    try {
      const result = await sendChat({ key, model, messages, stream, maxTokens, signal: controller.signal }, (soFar) => update({ content: soFar }));
      update({ content: result.text, result, pending: false });
    } catch (error) {
      const aborted = error instanceof DOMException && error.name === "AbortError";
      update({ pending: false, error: aborted ? t("playground.stopped") : errorText(error) });
    } finally {
      setBusy(false);
      abort.current = null;
    }
  };

  const last = [...turns].reverse().find((x) => x.role === "assistant" && x.result)?.result;

  return (
    <>
      <PageTitle title={t("playground.title")} subtitle={t("playground.subtitle")} />
      <Row gutter={16}>
        <Col xs={24} lg={8}>
          <Card size="small" title={t("playground.settings")}>
            <Form layout="vertical">
              <Form.Item label={t("playground.key")} extra={t("playground.keyHint")}>
                <Input.Password value={key} onChange={(e) => setKey(e.target.value.trim())} placeholder="sk-aigw-…" autoComplete="off" aria-label={t("playground.key")} />
              </Form.Item>
              <Form.Item label={t("common.model")} extra={allowed.data ? t("playground.modelsOfKey") : allowed.error ? errorText(allowed.error) : t("playground.modelsConfigured")}>
                <Space.Compact style={{ width: "100%" }}>
                  <Select showSearch value={model} onChange={setModel} options={options.map((m) => ({ value: m, label: m }))} aria-label={t("common.model")} style={{ width: "100%" }} />
                  <Button icon={<SyncOutlined />} onClick={() => void allowed.refetch()} disabled={!key} aria-label={t("common.refresh")} />
                </Space.Compact>
              </Form.Item>
              <Form.Item label={t("playground.system")}>
                <Input.TextArea value={system} onChange={(e) => setSystem(e.target.value)} autoSize={{ minRows: 2, maxRows: 6 }} />
              </Form.Item>
              <Space size="large">
                <Form.Item label={t("playground.stream")}>
                  <Switch checked={stream} onChange={setStream} aria-label={t("playground.stream")} />
                </Form.Item>
                <Form.Item label={t("playground.maxTokens")}>
                  <InputNumber min={1} value={maxTokens} onChange={setMaxTokens} />
                </Form.Item>
              </Space>
            </Form>
          </Card>
          {last && (
            <Card size="small" title={t("playground.lastResponse")} style={{ marginTop: 16 }} data-testid="chat-meta">
              <Descriptions column={1} size="small">
                <Descriptions.Item label={t("requests.requestId")}>
                  {last.requestId ? (
                    <Link to={`/requests?request_id=${encodeURIComponent(last.requestId)}&open=${encodeURIComponent(last.requestId)}`} className="aigw-mono">
                      {last.requestId}
                    </Link>
                  ) : (
                    "–"
                  )}
                </Descriptions.Item>
                <Descriptions.Item label={t("requests.upstream")}>{last.upstream ?? "–"}</Descriptions.Item>
                <Descriptions.Item label={t("playground.firstToken")}>{formatMs(last.firstTokenMs)}</Descriptions.Item>
                <Descriptions.Item label={t("playground.total")}>{formatMs(last.totalMs)}</Descriptions.Item>
                <Descriptions.Item label={t("requests.tokens")}>
                  {last.usage ? t("playground.usage", { prompt: formatNumber(last.usage.prompt_tokens ?? 0), completion: formatNumber(last.usage.completion_tokens ?? 0) }) : "–"}
                </Descriptions.Item>
              </Descriptions>
            </Card>
          )}
        </Col>
        <Col xs={24} lg={16}>
          <Card size="small" title={t("playground.conversation")} extra={<Button size="small" icon={<ClearOutlined />} onClick={() => setTurns([])} disabled={busy || !turns.length}>{t("playground.clear")}</Button>}>
            {!key && <Alert type="info" showIcon title={t("playground.needKey")} style={{ marginBottom: 12 }} />}
            <div data-testid="conversation" style={{ display: "flex", flexDirection: "column", gap: 12, minHeight: 240 }}>
              {turns.length === 0 && <Typography.Text type="secondary">{t("playground.empty")}</Typography.Text>}
              {turns.map((turn, i) => (
                <div key={i} style={{ alignSelf: turn.role === "user" ? "flex-end" : "flex-start", maxWidth: "85%" }}>
                  <Tag color={turn.role === "user" ? "blue" : "green"}>{t(`playground.role.${turn.role}`)}</Tag>
                  <div
                    data-testid={turn.role === "assistant" ? "assistant-message" : "user-message"}
                    style={{ background: turn.role === "user" ? "#e6f4ff" : "#f6ffed", borderRadius: 8, padding: "8px 12px", marginTop: 4 }}
                  >
                    <pre className="aigw-stream">{turn.content}{turn.pending ? "▍" : ""}</pre>
                    {turn.error && <Alert type="error" showIcon title={turn.error} style={{ marginTop: 8 }} />}
                  </div>
                </div>
              ))}
            </div>
            <Space.Compact style={{ width: "100%", marginTop: 16 }}>
              <Input.TextArea
                value={prompt}
                onChange={(e) => setPrompt(e.target.value)}
                placeholder={t("playground.placeholder")}
                autoSize={{ minRows: 2, maxRows: 8 }}
                onPressEnter={(e) => {
                  if (!e.shiftKey) {
                    e.preventDefault();
                    void send();
                  }
                }}
                aria-label={t("playground.message")}
              />
              {busy ? (
                <Button danger icon={<StopOutlined />} onClick={() => abort.current?.abort()} style={{ height: "auto" }}>
                  {t("playground.stop")}
                </Button>
              ) : (
                <Button type="primary" icon={<SendOutlined />} onClick={() => void send()} disabled={!key || !model || !prompt.trim()} style={{ height: "auto" }}>
                  {t("playground.send")}
                </Button>
              )}
            </Space.Compact>
          </Card>
        </Col>
      </Row>
    </>
  );
}
