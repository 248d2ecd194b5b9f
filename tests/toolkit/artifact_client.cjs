// The real @actions/artifact 2.x client against vmrunner's toolkit services.
// usage: node artifact_client.cjs upload NAME ROOT   (every file under ROOT)
//        node artifact_client.cjs download NAME DEST
//        node artifact_client.cjs list
// Prints one JSON line with the client's result; exits 1 with the error on failure.
const fs = require('fs');
const path = require('path');
const {DefaultArtifactClient} = require('@actions/artifact');

function walk(dir) {
  return fs.readdirSync(dir, {withFileTypes: true}).flatMap(e =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
}

async function main(argv) {
  const client = new DefaultArtifactClient();
  const [cmd, name, where] = argv;
  if (cmd === 'upload') {
    return client.uploadArtifact(name, walk(where), where, {retentionDays: 1});
  }
  if (cmd === 'download') {
    const {artifact} = await client.getArtifact(name);
    const res = await client.downloadArtifact(artifact.id, {path: where, expectedHash: artifact.digest});
    return {...res, artifact};
  }
  if (cmd === 'list') {
    return client.listArtifacts();
  }
  throw new Error(`unknown command ${cmd}`);
}

main(process.argv.slice(2)).then(
  r => { console.log(JSON.stringify(r)); },
  e => { console.error(`ERROR: ${e.message}`); process.exit(1); });
