// The signed-in user. Password sign-in leaves the session in the config center's HttpOnly
// cookie (page scripts never hold it); the bootstrap admin token, when used instead, is kept in
// sessionStorage (this tab only) and sent as a bearer token.
import { useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { ApiError, onUnauthorized, setBearerToken } from "../api/client";
import { api } from "../api/endpoints";
import type { Me } from "../api/types";

const TOKEN_KEY = "aigw.token";

export interface AuthState {
  user: Me | null;
  loading: boolean;
  expired: boolean;
  signIn: (username: string, password: string) => Promise<Me>;
  signInWithToken: (token: string) => Promise<Me>;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children, initialUser }: { children: ReactNode; initialUser?: Me | null }) {
  const queryClient = useQueryClient();
  const [user, setUser] = useState<Me | null>(initialUser ?? null);
  const [loading, setLoading] = useState(initialUser === undefined);
  const [expired, setExpired] = useState(false);

  useEffect(() => {
    if (initialUser !== undefined) return;
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) setBearerToken(token);
    let live = true;
    api
      .me()
      .then((me) => live && setUser(me))
      .catch(() => live && setUser(null))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [initialUser]);

  useEffect(
    () =>
      onUnauthorized(() => {
        setUser((current) => {
          if (current) setExpired(true);
          return null;
        });
        sessionStorage.removeItem(TOKEN_KEY);
        setBearerToken(null);
      }),
    [],
  );

  const signIn = useCallback(
    async (username: string, password: string) => {
      setBearerToken(null);
      sessionStorage.removeItem(TOKEN_KEY);
      const answer = await api.login(username, password);
      queryClient.clear();
      setExpired(false);
      setUser(answer.user);
      return answer.user;
    },
    [queryClient],
  );

  const signInWithToken = useCallback(
    async (token: string) => {
      setBearerToken(token);
      try {
        const me = await api.me();
        sessionStorage.setItem(TOKEN_KEY, token);
        queryClient.clear();
        setExpired(false);
        setUser(me);
        return me;
      } catch (error) {
        setBearerToken(null);
        throw error;
      }
    },
    [queryClient],
  );

  const signOut = useCallback(async () => {
    try {
      if (!sessionStorage.getItem(TOKEN_KEY)) await api.logout();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
    sessionStorage.removeItem(TOKEN_KEY);
    setBearerToken(null);
    queryClient.clear();
    setExpired(false);
    setUser(null);
  }, [queryClient]);

  const value = useMemo(
    () => ({ user, loading, expired, signIn, signInWithToken, signOut }),
    [user, loading, expired, signIn, signInWithToken, signOut],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside AuthProvider");
  return state;
}
