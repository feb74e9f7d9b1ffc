// Pre-compress the build (gzip, next to each file) so `aigw web` serves the 2 MB bundle in
// ~0.6 MB; aiohttp's FileResponse picks the .gz sibling when the browser accepts gzip.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const root = new URL("../../src/aigw/web/static/", import.meta.url).pathname;
const walk = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
for (const path of walk(root)) {
  if (!/\.(js|css|html|svg|json)$/.test(path)) continue;
  writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
}
