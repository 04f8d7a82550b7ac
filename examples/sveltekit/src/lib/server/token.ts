// The tracker's identity token, minted as the tracker's own `mint_token` does (docs/auth.md):
//   v1.<expiry>.<base64url, unpadded, of HMAC-SHA256(secret, "v1\n<userId>\n<expiry>")>
// Minting here, in the app's own server, needs no round trip to the tracker and keeps the
// secret out of the browser.
import { createHmac } from 'node:crypto';

export function mintToken(secret: string, userId: string, ttlS = 86400, nowS = Date.now() / 1000): string {
  if (!secret) throw new Error('TRACKER_SECRET is empty: set it to the tracker\'s secret');
  const expiry = String(Math.floor(nowS + ttlS));
  const signature = createHmac('sha256', secret).update(`v1\n${userId}\n${expiry}`).digest('base64url');
  return `v1.${expiry}.${signature}`;
}
