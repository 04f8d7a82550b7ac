// The example's stand-in for a session: the logged-in user's name, set by /login.
export const USER_COOKIE = 'user';
