import {
  ApiOutlined,
  AppstoreOutlined,
  BarChartOutlined,
  CloudServerOutlined,
  DashboardOutlined,
  DollarOutlined,
  ExperimentOutlined,
  HistoryOutlined,
  KeyOutlined,
  LogoutOutlined,
  PartitionOutlined,
  TeamOutlined,
  UnorderedListOutlined,
} from "@ant-design/icons";
import { Button, Layout, Menu, Space, Spin, Tag, Typography } from "antd";
import { lazy, Suspense } from "react";
import { useTranslation } from "react-i18next";
import { Navigate, Route, Routes, useLocation, useNavigate } from "react-router";
import { useAuth } from "../auth/AuthContext";
import { canSee, isReadOnly, type Resource } from "../auth/permissions";
import { LoginPage } from "../pages/Login";
import { LanguageSwitch } from "./LanguageSwitch";

// Pages load on first visit (the charts only with the pages that draw them).
const KeysPage = lazy(() => import("../pages/Keys").then((m) => ({ default: m.KeysPage })));
const ModelsPage = lazy(() => import("../pages/Models").then((m) => ({ default: m.ModelsPage })));
const NamespacesPage = lazy(() => import("../pages/Namespaces").then((m) => ({ default: m.NamespacesPage })));
const OverviewPage = lazy(() => import("../pages/Overview").then((m) => ({ default: m.OverviewPage })));
const PlaygroundPage = lazy(() => import("../pages/Playground").then((m) => ({ default: m.PlaygroundPage })));
const PricesPage = lazy(() => import("../pages/Prices").then((m) => ({ default: m.PricesPage })));
const ProvidersPage = lazy(() => import("../pages/Providers").then((m) => ({ default: m.ProvidersPage })));
const RequestsPage = lazy(() => import("../pages/Requests").then((m) => ({ default: m.RequestsPage })));
const UsagePage = lazy(() => import("../pages/Usage").then((m) => ({ default: m.UsagePage })));
const UsersPage = lazy(() => import("../pages/Users").then((m) => ({ default: m.UsersPage })));
const VersionsPage = lazy(() => import("../pages/Versions").then((m) => ({ default: m.VersionsPage })));

interface NavItem {
  path: string;
  label: string;
  icon: React.ReactNode;
  resource?: Resource;
  globalOnly?: boolean;
}

export function Shell() {
  const { t } = useTranslation();
  const { user, loading, signOut } = useAuth();
  const location = useLocation();
  const navigate = useNavigate();

  if (loading) {
    return (
      <div style={{ display: "grid", placeItems: "center", height: "100%" }}>
        <Spin size="large" />
      </div>
    );
  }
  if (!user) return <LoginPage />;

  const nsAdmin = user.role === "namespace_admin";
  const all: NavItem[] = [
    { path: "/", label: t("nav.overview"), icon: <DashboardOutlined />, globalOnly: true },
    { path: "/namespaces", label: t("nav.namespaces"), icon: <AppstoreOutlined />, resource: "namespaces" },
    { path: "/keys", label: t("nav.keys"), icon: <KeyOutlined />, resource: "keys" },
    { path: "/providers", label: t("nav.providers"), icon: <CloudServerOutlined />, resource: "providers" },
    { path: "/models", label: t("nav.models"), icon: <PartitionOutlined />, resource: "models" },
    { path: "/prices", label: t("nav.prices"), icon: <DollarOutlined />, resource: "prices" },
    { path: "/usage", label: t("nav.usage"), icon: <BarChartOutlined /> },
    { path: "/requests", label: t("nav.requests"), icon: <UnorderedListOutlined /> },
    { path: "/versions", label: t("nav.versions"), icon: <HistoryOutlined />, resource: "versions" },
    { path: "/playground", label: t("nav.playground"), icon: <ExperimentOutlined /> },
    { path: "/users", label: t("nav.users"), icon: <TeamOutlined />, resource: "users" },
  ];
  const items = all.filter((item) => (item.resource ? canSee(user, item.resource) : !(item.globalOnly && nsAdmin)));

  const selected = items
    .map((i) => i.path)
    .filter((p) => (p === "/" ? location.pathname === "/" : location.pathname.startsWith(p)))
    .sort((a, b) => b.length - a.length)[0];

  return (
    <Layout style={{ minHeight: "100vh" }}>
      <Layout.Sider breakpoint="lg" collapsedWidth={0} width={208}>
        <div className="aigw-logo">
          <ApiOutlined /> aigw<small>{t("app.subtitle")}</small>
        </div>
        <Menu
          theme="dark"
          mode="inline"
          selectedKeys={selected ? [selected] : []}
          items={items.map((i) => ({ key: i.path, icon: i.icon, label: i.label }))}
          onClick={({ key }) => navigate(key)}
        />
      </Layout.Sider>
      <Layout>
        <Layout.Header style={{ background: "#fff", padding: "0 24px", display: "flex", justifyContent: "flex-end", alignItems: "center", borderBottom: "1px solid #f0f0f0" }}>
          <Space size="middle">
            {isReadOnly(user) && <Tag color="orange">{t("common.readOnly")}</Tag>}
            <LanguageSwitch />
            <Typography.Text data-testid="current-user">
              {user.username} <Tag>{t(`roles.${user.role}`)}{user.namespace ? `: ${user.namespace}` : ""}</Tag>
            </Typography.Text>
            <Button icon={<LogoutOutlined />} onClick={() => void signOut()}>
              {t("auth.signOut")}
            </Button>
          </Space>
        </Layout.Header>
        <Layout.Content style={{ padding: 24 }}>
          <Suspense fallback={<Spin style={{ display: "block", marginTop: 64 }} />}>
          <Routes>
            <Route path="/" element={nsAdmin ? <Navigate to="/keys" replace /> : <OverviewPage />} />
            <Route path="/namespaces" element={<NamespacesPage />} />
            <Route path="/keys" element={<KeysPage />} />
            <Route path="/keys/:namespace" element={<KeysPage />} />
            <Route path="/providers" element={<ProvidersPage />} />
            <Route path="/models" element={<ModelsPage />} />
            <Route path="/prices" element={<PricesPage />} />
            <Route path="/usage" element={<UsagePage />} />
            <Route path="/requests" element={<RequestsPage />} />
            <Route path="/versions" element={<VersionsPage />} />
            <Route path="/playground" element={<PlaygroundPage />} />
            <Route path="/users" element={<UsersPage />} />
            <Route path="*" element={<Navigate to="/" replace />} />
          </Routes>
          </Suspense>
        </Layout.Content>
      </Layout>
    </Layout>
  );
}
