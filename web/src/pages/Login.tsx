import { LockOutlined, UserOutlined } from "@ant-design/icons";
import { Alert, Button, Card, Form, Input, Tabs, Typography } from "antd";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { useAuth } from "../auth/AuthContext";
import { errorText } from "../components/common";
import { LanguageSwitch } from "../components/LanguageSwitch";

export function LoginPage() {
  const { t } = useTranslation();
  const { signIn, signInWithToken, expired } = useAuth();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div style={{ minHeight: "100vh", display: "grid", placeItems: "center", background: "#f5f5f5" }}>
      <Card style={{ width: 380 }}>
        <div style={{ display: "flex", justifyContent: "space-between", alignItems: "center" }}>
          <Typography.Title level={3} style={{ margin: 0 }}>
            {t("auth.title")}
          </Typography.Title>
          <LanguageSwitch />
        </div>
        <Typography.Paragraph type="secondary">{t("auth.subtitle")}</Typography.Paragraph>
        {expired && <Alert type="warning" showIcon title={t("auth.expired")} style={{ marginBottom: 16 }} />}
        {error && <Alert type="error" showIcon title={error} style={{ marginBottom: 16 }} />}
        <Tabs
          items={[
            {
              key: "password",
              label: t("auth.passwordTab"),
              children: (
                <Form layout="vertical" onFinish={(v: { username: string; password: string }) => run(() => signIn(v.username, v.password))}>
                  <Form.Item name="username" label={t("auth.username")} rules={[{ required: true }]}>
                    <Input prefix={<UserOutlined />} autoComplete="username" />
                  </Form.Item>
                  <Form.Item name="password" label={t("auth.password")} rules={[{ required: true }]}>
                    <Input.Password prefix={<LockOutlined />} autoComplete="current-password" />
                  </Form.Item>
                  <Button type="primary" htmlType="submit" block loading={busy}>
                    {t("auth.signIn")}
                  </Button>
                </Form>
              ),
            },
            {
              key: "token",
              label: t("auth.tokenTab"),
              children: (
                <Form layout="vertical" onFinish={(v: { token: string }) => run(() => signInWithToken(v.token.trim()))}>
                  <Form.Item name="token" label={t("auth.token")} extra={t("auth.tokenHint")} rules={[{ required: true }]}>
                    <Input.Password autoComplete="off" />
                  </Form.Item>
                  <Button type="primary" htmlType="submit" block loading={busy}>
                    {t("auth.signIn")}
                  </Button>
                </Form>
              ),
            },
          ]}
        />
      </Card>
    </div>
  );
}
