/// <reference types="vitest/config" />
// The dashboard's build: a static bundle inside the Python package (served by `aigw web`), with
// every asset local, so the page works offline. `npm run dev` proxies the API like `aigw web`.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const center = process.env.AIGW_CONFIG_CENTER_URL ?? "http://127.0.0.1:8001";
const gateway = process.env.AIGW_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/aigw/web/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2500,
  },
  server: {
    port: 3000,
    proxy: {
      "/api": center,
      "/gateway": { target: gateway, rewrite: (path) => path.replace(/^\/gateway/, "") },
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    css: false,
  },
});
