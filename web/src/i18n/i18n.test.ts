import { describe, expect, it } from "vitest";
import { createI18n, resolveLanguage } from ".";
import en from "./locales/en.json";
import zhCN from "./locales/zh-CN.json";

function keys(tree: object, prefix = ""): string[] {
  return Object.entries(tree).flatMap(([k, v]) => (v && typeof v === "object" ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

describe("resolveLanguage", () => {
  it("picks 简体中文 for any Chinese tag and English otherwise", () => {
    expect(resolveLanguage("zh")).toBe("zh-CN");
    expect(resolveLanguage("zh-CN")).toBe("zh-CN");
    expect(resolveLanguage("zh-Hans-SG")).toBe("zh-CN");
    expect(resolveLanguage("zh_TW")).toBe("zh-CN");
    expect(resolveLanguage("en-GB")).toBe("en");
    expect(resolveLanguage("fr")).toBe("en");
    expect(resolveLanguage(undefined)).toBe("en");
  });
});

describe("translations", () => {
  it("zh-CN translates every English string, and nothing else", () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort());
  });

  it("renders Chinese, with interpolation", () => {
    const i18n = createI18n("zh-CN");
    expect(i18n.t("nav.overview")).toBe("概览");
    expect(i18n.t("keys.newIn", { namespace: "team-a" })).toBe("在 team-a 中新建密钥");
  });

  it("falls back to English for a string missing from zh-CN, never to the key", () => {
    const i18n = createI18n("zh-CN");
    i18n.addResource("en", "translation", "test.onlyEnglish", "Only in English");
    expect(i18n.t("test.onlyEnglish")).toBe("Only in English");
  });

  it("uses the browser's language by default", () => {
    const original = Object.getOwnPropertyDescriptor(window.navigator, "languages");
    Object.defineProperty(window.navigator, "languages", { value: ["zh-CN", "en"], configurable: true });
    localStorage.clear();
    try {
      const i18n = createI18n();
      expect(i18n.language).toBe("zh-CN");
      expect(i18n.t("auth.signIn")).toBe("登录");
    } finally {
      if (original) Object.defineProperty(window.navigator, "languages", original);
      else delete (window.navigator as unknown as Record<string, unknown>).languages;
    }
  });

  it("keeps the language chosen in the header over the browser's", () => {
    localStorage.setItem("aigw.lang", "en");
    Object.defineProperty(window.navigator, "languages", { value: ["zh-CN"], configurable: true });
    try {
      expect(createI18n().language).toBe("en");
    } finally {
      localStorage.clear();
      delete (window.navigator as unknown as Record<string, unknown>).languages;
    }
  });
});
