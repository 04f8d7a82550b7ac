declare global {
  namespace App {
    interface Locals {
      /** The logged-in user, or null for a visitor. */
      user: string | null;
      /** The tracker's identity token of `user`, minted for each request. */
      trackerToken: string | null;
    }
  }
}

export {};
