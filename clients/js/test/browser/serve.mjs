// Serve clients/js (and page.html) for the manual browser check; print what
// the page POSTs to /result, then exit (1 after 30 s without a result).
//   node test/browser/serve.mjs PORT

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const types = { '.js': 'text/javascript', '.html': 'text/html', '.ts': 'text/plain' };

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/result') {
    let body = '';
    for await (const chunk of req) body += chunk;
    console.log(body);
    res.end('ok');
    setTimeout(() => process.exit(JSON.parse(body).ok ? 0 : 1), 50);
    return;
  }
  const file = url.pathname === '/page.html' ? path.join(here, 'page.html') : path.join(root, url.pathname);
  if (!file.startsWith(root)) {
    res.statusCode = 403;
    res.end();
    return;
  }
  try {
    const data = await readFile(file);
    res.setHeader('content-type', types[/** @type {'.js'} */ (path.extname(file))] ?? 'application/octet-stream');
    res.end(data);
  } catch {
    res.statusCode = 404;
    res.end();
  }
});
server.listen(Number(process.argv[2]), '127.0.0.1');
const giveUp = setTimeout(() => {
  console.log('{"ok":false,"error":"no result in 30 s"}');
  process.exit(1);
}, 30_000);
void giveUp;
