// Compiles contracts/*.sol with the pinned solc into artifacts/<Name>.json.
// Deterministic: the same sources give byte-identical artifacts.
// Usage: node compile.js [outDir]   (default: artifacts)
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const solc = require('solc');

const here = __dirname;
const outDir = path.resolve(here, process.argv[2] || 'artifacts');
const names = ['MockUSDC', 'CheckoutV1', 'CheckoutV2'];
const sources = {};
for (const n of names) {
  sources[`${n}.sol`] = { content: fs.readFileSync(path.join(here, 'contracts', `${n}.sol`), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
for (const n of names) {
  const c = output.contracts[`${n}.sol`][n];
  const artifact = {
    contractName: n,
    compiler: solc.version(),
    sourceSha256: crypto.createHash('sha256').update(sources[`${n}.sol`].content).digest('hex'),
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
  };
  fs.writeFileSync(path.join(outDir, `${n}.json`), JSON.stringify(artifact, null, 2) + '\n');
  console.log(`${n}: ${artifact.bytecode.length / 2 - 1} bytes`);
}
