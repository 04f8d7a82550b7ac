// Every request learns who is logged in (the example's `user` cookie, set by /login) and,
// for a logged-in user, carries a fresh identity token for tracker.js to identify them with.
import type { Handle } from '@sveltejs/kit';
import { env } from '$env/dynamic/private';
import { mintToken } from '$lib/server/token';
import { USER_COOKIE } from '$lib/server/user';

export const handle: Handle = async ({ event, resolve }) => {
  const user = event.cookies.get(USER_COOKIE) || null;
  event.locals.user = user;
  event.locals.trackerToken = user ? mintToken(env.TRACKER_SECRET ?? '', user) : null;
  return resolve(event);
};
