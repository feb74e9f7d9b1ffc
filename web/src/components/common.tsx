import { Alert, Button, Popconfirm, Tooltip, Typography, type ButtonProps } from "antd";
import type { ReactNode } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../api/client";
import { useAuth } from "../auth/AuthContext";
import { can, type Action } from "../auth/permissions";

/** A button that changes something: disabled, with the reason, for a role that may not. */
export function WriteButton({
  action,
  namespace,
  ...props
}: ButtonProps & { action: Action; namespace?: string }) {
  const { t } = useTranslation();
  const { user } = useAuth();
  const allowed = can(user, action, namespace);
  if (allowed) return <Button {...props} />;
  return (
    <Tooltip title={t("common.readOnlyHint")}>
      <Button {...props} disabled />
    </Tooltip>
  );
}

/** A gated button asking for confirmation first (deletions, revocations, rollbacks). */
export function ConfirmButton({
  action,
  namespace,
  confirm,
  onConfirm,
  ...props
}: ButtonProps & { action: Action; namespace?: string; confirm: ReactNode; onConfirm: () => unknown }) {
  const { t } = useTranslation();
  const { user } = useAuth();
  if (!can(user, action, namespace)) {
    return (
      <Tooltip title={t("common.readOnlyHint")}>
        <Button {...props} disabled />
      </Tooltip>
    );
  }
  return (
    <Popconfirm title={confirm} onConfirm={() => onConfirm()} okText={t("common.yes")} cancelText={t("common.no")}>
      <Button {...props} />
    </Popconfirm>
  );
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const fields = error.details.filter((d) => d.field).map((d) => `${d.field}: ${d.message}`);
    return fields.length && !error.message.includes(fields[0]) ? `${error.message} (${fields.join("; ")})` : error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export function ErrorAlert({ error }: { error: unknown }) {
  const { t } = useTranslation();
  if (!error) return null;
  const status = error instanceof ApiError ? error.status : null;
  const title =
    status === 0
      ? t("errors.network")
      : status === 403
        ? t("errors.forbidden")
        : status === 404
          ? t("errors.notFound")
          : t("errors.failed");
  return <Alert type="error" showIcon title={title} description={errorText(error)} style={{ marginBottom: 16 }} />;
}

export function PageTitle({ title, extra, subtitle }: { title: string; extra?: ReactNode; subtitle?: ReactNode }) {
  return (
    <div style={{ display: "flex", alignItems: "center", justifyContent: "space-between", marginBottom: 16, gap: 16, flexWrap: "wrap" }}>
      <div>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {title}
        </Typography.Title>
        {subtitle && <Typography.Text type="secondary">{subtitle}</Typography.Text>}
      </div>
      {extra && <div style={{ display: "flex", gap: 8, flexWrap: "wrap" }}>{extra}</div>}
    </div>
  );
}

/** Comma or newline separated text as a list, and back. */
export function toList(text: string | undefined | null): string[] {
  return (text ?? "")
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function fromList(list: string[] | undefined | null): string {
  return (list ?? []).join(", ");
}
