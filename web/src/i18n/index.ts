// English and Simplified Chinese. The browser's language is the default (any zh* picks 简体中文,
// anything else English); a choice made in the header is kept in localStorage. A string missing
// from zh-CN falls back to English rather than showing its key.
import i18n from "i18next";
import LanguageDetector from "i18next-browser-languagedetector";
import { initReactI18next } from "react-i18next";
import en from "./locales/en.json";
import zhCN from "./locales/zh-CN.json";

export const LANGUAGES = [
  { code: "en", label: "English" },
  { code: "zh-CN", label: "简体中文" },
] as const;

export type Language = (typeof LANGUAGES)[number]["code"];

export const STORAGE_KEY = "aigw.lang";

/** The supported language for a BCP 47 tag the browser (or a user) gives. */
export function resolveLanguage(tag: string | null | undefined): Language {
  const lower = (tag ?? "").toLowerCase();
  if (lower === "zh" || lower.startsWith("zh-") || lower.startsWith("zh_")) return "zh-CN";
  return "en";
}

export const resources = {
  en: { translation: en },
  "zh-CN": { translation: zhCN },
};

export function createI18n(language?: string) {
  const instance = i18n.createInstance();
  const detect = language === undefined;
  if (detect) instance.use(LanguageDetector);
  instance.use(initReactI18next);
  void instance.init({
    resources,
    lng: detect ? undefined : resolveLanguage(language),
    supportedLngs: ["en", "zh-CN"],
    fallbackLng: "en",
    load: "currentOnly",
    returnNull: false,
    interpolation: { escapeValue: false },
    detection: {
      order: ["localStorage", "navigator"],
      lookupLocalStorage: STORAGE_KEY,
      caches: ["localStorage"],
      convertDetectedLanguage: (lng: string) => resolveLanguage(lng),
    },
    initAsync: false,
  });
  return instance;
}
