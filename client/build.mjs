// Builds the browser client into tracker/static/: tracker.js (the default script), one
// tracker.<name>.<hash>.js per file a site loads on demand (src/files/), and tracker.mjs.
// `node build.mjs --check` builds in memory and fails if anything differs from the
// committed files.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, transform } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'tracker', 'static');
const check = process.argv.includes('--check');
const BANNER = '/* Built by client/build.mjs from client/src: edit those, not this file. */';
const common = { bundle: true, minify: true, format: 'iife', target: 'es2019', write: false, banner: { js: BANNER } };
// What the build owns in tracker/static/ (the lazily loaded files carry a hash in their name).
const OWNED = /^tracker(\.[a-z]+\.[0-9a-f]{10})?\.(js|mjs)$/;

async function bundle(entry, define = {}) {
  const result = await build({ ...common, entryPoints: [join(here, 'src', entry)], define });
  return result.outputFiles[0].text;
}

const files = {};
const names = {};
for (const file of readdirSync(join(here, 'src', 'files')).sort()) {
  const name = basename(file, '.js');
  const text = await bundle(join('files', file));
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 10);
  names[name] = `tracker.${name}.${hash}.js`;
  files[names[name]] = text;
}
files['tracker.js'] = await bundle('main.js', { __TRACKER_FILES__: JSON.stringify(names) });
const module = readFileSync(join(here, 'src', 'module.mjs'), 'utf8');
await transform(module, { format: 'esm', loader: 'js' }); // fails on a syntax error
files['tracker.mjs'] = module;

const present = readdirSync(out).filter((f) => OWNED.test(f));
if (check) {
  const differ = Object.keys(files).filter((f) => !present.includes(f) || readFileSync(join(out, f), 'utf8') !== files[f]);
  const stale = present.filter((f) => !(f in files));
  if (differ.length || stale.length) {
    console.error(`tracker/static/ is not what client/src builds: differs ${differ.join(', ') || '-'}; stale ${stale.join(', ') || '-'}.`);
    console.error('Run `make client` and commit the result.');
    process.exit(1);
  }
  console.log(`tracker/static/ matches client/src (${Object.keys(files).length} files).`);
} else {
  for (const f of present) if (!(f in files)) rmSync(join(out, f));
  for (const [f, text] of Object.entries(files)) writeFileSync(join(out, f), text);
  console.log(`built ${Object.keys(files).join(', ')}`);
}
