// A stand-in for a real login: any valid user name is accepted. What matters for the tracker
// is what follows: hooks.server.ts mints the user's identity token on every request.
import { fail, redirect } from '@sveltejs/kit';
import type { Actions } from './$types';
import { USER_COOKIE } from '$lib/server/user';

const USER_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export const actions: Actions = {
  login: async ({ request, cookies }) => {
    const user = String((await request.formData()).get('user') ?? '');
    if (!USER_ID.test(user)) return fail(400, { field: 'user', error: 'expected 1-128 of A-Z a-z 0-9 . _ : @ -' });
    cookies.set(USER_COOKIE, user, { path: '/', httpOnly: true, sameSite: 'lax', secure: false });
    redirect(303, '/');
  },
  logout: async ({ cookies }) => {
    cookies.delete(USER_COOKIE, { path: '/' });
    redirect(303, '/');
  },
};
