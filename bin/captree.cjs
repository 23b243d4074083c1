#!/usr/bin/env node
/*
 * The `captree` command on any Node.js: plain CommonJS with old syntax on purpose, so that even
 * a Node far below the supported version gets here and can say what it needs.
 *
 * On Node >= 24 it runs the CLI in this process. Below, it runs the CLI with the Node.js 24 that
 * `npm ci` brings (the `node` dev dependency, node_modules/node/bin/node) when there is one, and
 * otherwise prints what is needed and exits 1.
 */
'use strict';
var path = require('path');
var fs = require('fs');

var REQUIRED = 24;
var root = path.resolve(__dirname, '..');

function major(version) {
  return Number(String(version).replace(/^v/, '').split('.')[0]);
}

/** The CLI's entry point: the built one of a package, else the sources of a clone. */
function entry() {
  var built = path.join(root, 'dist', 'cli', 'main.js');
  if (fs.existsSync(built)) return built;
  return path.join(root, 'src', 'cli', 'main.ts');
}

/** A Node.js >= 24 shipped with captree (the `node` package), or null. */
function bundledNode() {
  var candidates = [path.join(root, 'node_modules', 'node', 'bin', 'node')];
  try {
    candidates.push(path.join(path.dirname(require.resolve('node/package.json', { paths: [root] })), 'bin', 'node'));
  } catch (e) {
    // not installed
  }
  for (var i = 0; i < candidates.length; i++) {
    try {
      fs.accessSync(candidates[i], fs.constants.X_OK);
      return candidates[i];
    } catch (e) {
      // next
    }
  }
  return null;
}

function tooOld(version) {
  process.stderr.write(
    'captree: needs Node.js ' + REQUIRED + ' or later; this is Node.js ' + version + ' (' + process.execPath + ').\n' +
      '  Install Node.js ' + REQUIRED + ' (https://nodejs.org, or: nvm install ' + REQUIRED + '), or run captree from a clone\n' +
      "  after 'npm ci', which brings its own Node.js " + REQUIRED + '.\n',
  );
  return 1;
}

/**
 * Runs the CLI with another Node.js, as a child that owns the terminal: signals the terminal sends
 * to the whole group reach it directly, so this process only waits and passes its exit on.
 */
function delegate(node, args) {
  var spawn = require('child_process').spawn;
  var child = spawn(node, [entry()].concat(args), { stdio: 'inherit' });
  var forward = function (signal) {
    return function () {
      // Ctrl-C already reached the child through the process group; SIGTERM from kill(1) did not.
      if (signal !== 'SIGINT') child.kill(signal);
    };
  };
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  process.on('SIGHUP', forward('SIGHUP'));
  child.on('error', function (err) {
    process.stderr.write('captree: cannot run ' + node + ': ' + err.message + '\n');
    process.exit(1);
  });
  child.on('exit', function (code, signal) {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

/** Decides how to run `captree ARGS`; returns true when the CLI is to be loaded in this process. */
function run(args) {
  if (major(process.versions.node) >= REQUIRED) return true;
  var node = bundledNode();
  if (node === null) process.exit(tooOld(process.version));
  delegate(node, args);
  return false;
}

module.exports = { run: run, bundledNode: bundledNode, REQUIRED: REQUIRED };

if (require.main === module) {
  if (run(process.argv.slice(2))) {
    var url = require('url').pathToFileURL(entry()).href;
    // Not a bare import(): older Node cannot even parse it, and must get as far as tooOld().
    new Function('u', 'return import(u)')(url).then(
      function (m) {
        return m.cli();
      },
      function (err) {
        process.stderr.write('captree: cannot load ' + entry() + ': ' + err.message + '\n');
        process.exit(1);
      },
    );
  }
}
