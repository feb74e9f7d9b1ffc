import "./index.css";
import React from "react";
import ReactDOM from "react-dom/client";
import { App } from "./App";
import { createI18n } from "./i18n";

const i18n = createI18n();

ReactDOM.createRoot(document.getElementById("root")!).render(
  <React.StrictMode>
    <App i18n={i18n} />
  </React.StrictMode>,
);
