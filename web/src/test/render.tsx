import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactNode } from "react";
import { I18nextProvider } from "react-i18next";
import { MemoryRouter } from "react-router";
import type { Me } from "../api/types";
import { AuthProvider } from "../auth/AuthContext";
import { createI18n } from "../i18n";

/** Render with the app's providers, signed in as `user`, in `language`. */
export function renderWith(ui: ReactNode, { user = null, language = "en" }: { user?: Me | null; language?: string } = {}) {
  const i18n = createI18n(language);
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <I18nextProvider i18n={i18n}>
      <QueryClientProvider client={client}>
        <MemoryRouter>
          <AuthProvider initialUser={user}>{ui}</AuthProvider>
        </MemoryRouter>
      </QueryClientProvider>
    </I18nextProvider>,
  );
}
