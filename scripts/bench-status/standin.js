// A stand-in of the old TypeScript server's `GET /status/:name/:version`, for
// scripts/bench-status.sh: Fastify and a mysql2 pool of 16 connections, one
// query per request (`pool.execute`, a prepared statement with placeholders),
// written the plain way a ~650-line server writes it. It answers the same JSON
// document as hone-build's /status for the rows hone-build writes.
//
// Environment: DB_HOST, DB_PORT, DB_USER, DB_PASS, DB_NAME (the database),
// PORT (0 = any free port), POOL (16). Prints "listening on http://…" when
// ready.
'use strict';

const Fastify = require('fastify');
const mysql = require('mysql2/promise');

const env = process.env;
const pool = mysql.createPool({
  host: env.DB_HOST || '127.0.0.1',
  port: Number(env.DB_PORT || 3306),
  user: env.DB_USER || 'root',
  password: env.DB_PASS || '',
  database: env.DB_NAME,
  connectionLimit: Number(env.POOL || 16),
  waitForConnections: true,
});

const app = Fastify({ logger: false });

app.get('/status/:name/:version', async (req, reply) => {
  const { name, version } = req.params;
  const [rows] = await pool.execute(
    `SELECT bj.platform, bj.hubJobId, bj.status, bj.createdAt, bj.completedAt,
            bj.errorMessage, bj.sizeBytes, bj.sha256, bj.attempts
       FROM buildJobs bj
       JOIN plugins p ON p.id = bj.pluginId
      WHERE p.name = ? AND bj.version = ?
      ORDER BY bj.platform`,
    [name, version],
  );
  if (rows.length === 0) {
    reply.code(404);
    return { error: `no builds for ${name} ${version}` };
  }
  const builds = rows.map((r) => {
    const b = {
      platform: r.platform,
      hubJobId: r.hubJobId,
      status: r.status,
      createdAt: r.createdAt,
    };
    if (r.completedAt != null) b.completedAt = r.completedAt;
    if (r.errorMessage != null) b.errorMessage = r.errorMessage;
    if (r.sizeBytes != null) b.size = r.sizeBytes;
    if (r.sha256 != null) b.sha256 = r.sha256;
    b.attempts = r.attempts ?? 0;
    return b;
  });
  let overall = 'building';
  if (builds.some((b) => b.status === 'failed')) overall = 'failed';
  else if (builds.every((b) => b.status === 'completed')) overall = 'completed';
  return { pluginName: name, version, builds, overall };
});

app
  .listen({ host: '127.0.0.1', port: Number(env.PORT || 0) })
  .then((address) => console.log(`listening on ${address}`))
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    app.close().then(() => pool.end()).finally(() => process.exit(0));
  });
}
