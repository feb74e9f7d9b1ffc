import { Select } from "antd";
import { useTranslation } from "react-i18next";
import { LANGUAGES, resolveLanguage } from "../i18n";

export function LanguageSwitch() {
  const { i18n } = useTranslation();
  return (
    <Select
      aria-label="Language / 语言"
      size="small"
      value={resolveLanguage(i18n.language)}
      style={{ width: 112 }}
      onChange={(lng) => void i18n.changeLanguage(lng)}
      options={LANGUAGES.map((l) => ({ value: l.code, label: l.label }))}
    />
  );
}
