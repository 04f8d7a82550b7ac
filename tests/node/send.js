// Sends a page, a track and an alias with Segment's unmodified Node SDK, then flushes.
// Usage: node send.js HOST WRITE_KEY USER_ID ANONYMOUS_ID
const { Analytics } = require('@segment/analytics-node')

const [host, writeKey, userId, anonymousId] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxRetries: 2 })
analytics.on('error', (err) => {
  console.error('error:', err && err.reason ? String(err.reason) : String(err))
  process.exitCode = 1
})
analytics.page({ anonymousId, properties: { path: '/from-node' } })
analytics.track({ userId, event: 'Node Event', properties: { plan: { name: 'pro' } } })
analytics.alias({ previousId: anonymousId, userId })
analytics.closeAndFlush({ timeout: 20000 }).then(() => console.log('flushed'))
