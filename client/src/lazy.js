// The captures and transports a site asks for beyond the default, each a file of its own,
// fetched from beside tracker.js on first use. A file runs `tracker._register(name, init)`,
// and `init` gets the core's internals (`internals`), which the files share with it.
import { config, script } from './config.js';
import { log } from './util.js';

// name -> file name with its content hash, filled in by the build.
const FILES = __TRACKER_FILES__;
const loading = {};
const arrived = {};
let internals = null;

export const provide = (core) => { internals = core; };

export function load(name) {
  if (!loading[name]) {
    loading[name] = new Promise((resolve, reject) => {
      arrived[name] = resolve;
      const tag = document.createElement('script');
      tag.src = script && script.src ? new URL(FILES[name], script.src).href : `${config.endpoint}/${FILES[name]}`;
      tag.async = true;
      tag.onerror = () => {
        delete loading[name];
        log('could not load', tag.src);
        reject(new Error(`tracker: ${name} could not be loaded`));
      };
      (document.head || document.documentElement).appendChild(tag);
    });
  }
  return loading[name];
}

export function register(name, init) {
  if (arrived[name]) arrived[name](init(internals));
}
