// The real @actions/cache 4.x client (cache service v2) against vmrunner's services.
// usage: node cache_client.cjs save KEY PATH...
//        node cache_client.cjs restore KEY RESTORE_KEYS(comma-separated, may be empty) PATH...
// Prints one JSON line: {"id": N} for a save, {"matched": KEY|null} for a restore.
const cache = require('@actions/cache');

async function main([cmd, key, ...rest]) {
  if (cmd === 'save') {
    return {id: await cache.saveCache(rest, key)};
  }
  if (cmd === 'restore') {
    const [restoreKeys, ...paths] = rest;
    const keys = restoreKeys ? restoreKeys.split(',') : [];
    return {matched: (await cache.restoreCache(paths, key, keys)) ?? null};
  }
  throw new Error(`unknown command ${cmd}`);
}

main(process.argv.slice(2)).then(
  r => { console.log(JSON.stringify(r)); },
  e => { console.error(`ERROR: ${e.message}`); process.exit(1); });
