/**
 * The demo's background worker: once a second it calls the API and prints what it got, so the
 * logs show the tree working (and, during a restart, briefly not).
 */
const url = process.env.API_URL ?? 'http://127.0.0.1:18080/';
let tick = 0;

const timer = setInterval(async () => {
  tick += 1;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(800) });
    const body = await response.json();
    console.log(`worker: tick ${tick}, visits ${body.visits}`);
  } catch (error) {
    console.log(`worker: tick ${tick}, api unavailable (${error.cause?.code ?? error.message})`);
  }
}, 1000);

process.on('SIGTERM', () => {
  console.log(`worker: SIGTERM after ${tick} ticks`);
  clearInterval(timer);
  process.exit(0);
});
